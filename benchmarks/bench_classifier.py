"""Topic classifier on real help-desk tickets: our candidates vs plain TF-IDF + LinearSVC.

Data: ``../shared/datasets/it-service-tickets/train.csv.gz`` (38k tickets, 8 topics). A seeded,
stratified 20 % of it is held out here; every model is fitted on the other 80 % only (the
candidates' hyper-parameters by cross-validation inside that 80 %).

Embeddings of the 38k texts take minutes, so they are cached as ``.npy`` under
``<data dir>/bench/`` keyed by the embedding model id and a hash of the texts.

    .venv/bin/python benchmarks/bench_classifier.py [--sample N] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import platform
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.svm import LinearSVC

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.report import write_section  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ticket_assets.ml.evaluate import classification_metrics  # noqa: E402
from ticket_assets.ml.predict import TriageModel  # noqa: E402
from ticket_assets.ml.train import TrainConfig, train_triage_model  # noqa: E402
from ticket_assets.settings import get_settings  # noqa: E402

DATASET = REPO.parent / "shared" / "datasets" / "it-service-tickets" / "train.csv.gz"
SECTION = "## Classifier"
SEED = 42


def load_dataset(sample: int | None) -> pl.DataFrame:
    frame = pl.read_csv(DATASET).select("ticket_id", "text", "topic").drop_nulls()
    if sample:
        frame = frame.sample(n=min(sample, frame.height), seed=SEED, shuffle=True)
    return frame


def cached_embeddings(texts: list[str]) -> tuple[np.ndarray, str, float]:
    """Vectors for ``texts``, the embedding model id, and the seconds spent encoding (0 if cached)."""
    from ticket_assets.ml.embed import get_embedder

    settings = get_settings()
    embedder = get_embedder(settings)
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = settings.data_dir / "bench" / f"it-tickets-{embedder.model_id.replace('/', '_')}-{digest}.npy"
    if path.exists():
        return np.load(path), embedder.model_id, 0.0
    started = time.perf_counter()
    vectors = embedder.encode(texts, batch_size=settings.embed_batch_size)
    seconds = time.perf_counter() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors, embedder.model_id, seconds


def baseline(train_texts: list[str], y_train: np.ndarray, test_texts: list[str], y_test: np.ndarray) -> dict:
    """The obvious alternative: default TF-IDF, default LinearSVC."""
    started = time.perf_counter()
    vectorizer = TfidfVectorizer()
    model = LinearSVC(random_state=SEED).fit(vectorizer.fit_transform(train_texts), y_train)
    seconds = time.perf_counter() - started
    predicted = model.predict(vectorizer.transform(test_texts))
    return {
        "macro_f1": float(f1_score(y_test, predicted, average="macro")),
        "accuracy": float(accuracy_score(y_test, predicted)),
        "train_seconds": seconds,
    }


def score_candidates(
    model: TriageModel, alternatives: dict, test_texts: list[str], test_emb: np.ndarray, y_test: np.ndarray
) -> dict[str, dict]:
    """Holdout metrics of every candidate the search fitted (not only the chosen one)."""
    tfidf = model.vectorizer.transform(test_texts)
    results = {}
    for candidate, target_model in alternatives["topic"].items():
        probabilities = target_model.predict_proba(tfidf, test_emb)
        metrics = classification_metrics(y_test, probabilities, target_model.labels)
        results[candidate] = {key: metrics[key] for key in ("macro_f1", "accuracy", "ece", "brier")}
    return results


def single_ticket_latency(model: TriageModel, texts: list[str], embeddings: np.ndarray, n: int = 300) -> dict:
    """Per-ticket predict cost with a precomputed embedding (what the API does), p50/p95 in ms."""
    timings = []
    for i in range(n):
        j = i % len(texts)
        started = time.perf_counter()
        model.predict([texts[j]], embeddings[j : j + 1])
        timings.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": float(np.percentile(timings, 50)), "p95_ms": float(np.percentile(timings, 95))}


def run(sample: int | None) -> dict:
    frame = load_dataset(sample)
    texts = frame["text"].to_list()
    labels = np.array(frame["topic"].to_list(), dtype=object)
    vectors, model_id, embed_seconds = cached_embeddings(texts)
    train_idx, test_idx = train_test_split(
        np.arange(len(texts)), test_size=0.2, stratify=labels, random_state=SEED
    )
    train_texts = [texts[i] for i in train_idx]
    test_texts = [texts[i] for i in test_idx]
    y_train, y_test = labels[train_idx], labels[test_idx]

    results: dict = {
        "rows": len(texts),
        "train_rows": len(train_idx),
        "test_rows": len(test_idx),
        "embedding_model_id": model_id,
        "embedding_seconds": embed_seconds,
        "baseline": baseline(train_texts, y_train, test_texts, y_test),
    }
    config = TrainConfig(keep_all_candidates=True)
    train_frame = pl.DataFrame({"text": train_texts, "topic": y_train.tolist()})
    started = time.perf_counter()
    outcome = train_triage_model(train_frame, vectors[train_idx], model_id, config)
    results["train_seconds"] = time.perf_counter() - started
    report = outcome.reports["topic"]
    results["chosen"] = report.chosen
    results["cv"] = {c.candidate: c.cv_macro_f1 for c in report.candidates}
    results["candidates"] = score_candidates(
        outcome.model, outcome.alternatives, test_texts, vectors[test_idx], y_test
    )
    results["predict_latency"] = single_ticket_latency(outcome.model, test_texts, vectors[test_idx])
    results["model_megabytes"] = len(pickle.dumps(outcome.model)) / 1e6
    return results


def markdown(results: dict, command: str) -> str:
    base = results["baseline"]
    lines = [
        SECTION,
        "",
        f"Command: `{command}`  ",
        f"Machine: 2 cores / 24 GB, Python {platform.python_version()}. Data: `shared/datasets/it-service-tickets/"
        f"train.csv.gz`, {results['rows']:,} tickets, 8 topics; a seeded stratified 20 % "
        f"({results['test_rows']:,}) is held out, everything is fitted on the other {results['train_rows']:,}. "
        f"Embeddings: `{results['embedding_model_id']}`.",
        "",
        "| model | holdout macro-F1 | accuracy | ECE | CV macro-F1 |",
        "| --- | --- | --- | --- | --- |",
        f"| TF-IDF + LinearSVC, defaults (baseline) | {base['macro_f1']:.4f} | {base['accuracy']:.4f} | – | – |",
    ]
    names = {
        "tfidf": "word 1-2 + char_wb 2-5 TF-IDF -> LinearSVC (C by CV) -> calibrator",
        "embedding": "MiniLM embeddings -> LogisticRegression (C by CV) -> calibrator",
        "stack": "stack: TF-IDF SVM + embedding LR + embedding kNN (out-of-fold scores -> calibrator)",
    }
    for candidate, metrics in results["candidates"].items():
        chosen = " **(chosen)**" if candidate == results["chosen"] else ""
        lines.append(
            f"| {names.get(candidate, candidate)}{chosen} | {metrics['macro_f1']:.4f} | {metrics['accuracy']:.4f} "
            f"| {metrics['ece']:.4f} | {results['cv'][candidate]:.4f} |"
        )
    chosen = results["candidates"][results["chosen"]]
    latency = results["predict_latency"]
    lines += [
        "",
        f"- Chosen by CV macro-F1: `{results['chosen']}`, holdout macro-F1 {chosen['macro_f1']:.4f} vs baseline "
        f"{base['macro_f1']:.4f} ({chosen['macro_f1'] - base['macro_f1']:+.4f}).",
        f"- Training time (TF-IDF, 3-fold CV over every base model's grid, calibrators, final fit): "
        f"{results['train_seconds']:.0f} s; "
        f"baseline fit {base['train_seconds']:.1f} s. Embedding the {results['rows']:,} texts: "
        + (
            f"{results['embedding_seconds']:.0f} s."
            if results["embedding_seconds"]
            else "cached from an earlier run."
        ),
        f"- Predict one ticket with its embedding given (TF-IDF transform + linear models + calibrator): "
        f"p50 {latency['p50_ms']:.2f} ms, p95 {latency['p95_ms']:.2f} ms (the kNN scans all "
        f"{results['train_rows']:,} training vectors). Pickled model: {results['model_megabytes']:.0f} MB.",
        "",
        "Reading: character n-grams and a CV-chosen C add ~0.7 point over the default TF-IDF + SVM; "
        "embeddings alone are weaker (this corpus is anonymised keyword English, where exact terms "
        "matter), but stacking them adds ~1.5 points, most of it from the nearest-neighbour vote "
        "(help desks see the same requests again and again). Tried on the same split without gain "
        "(within +-0.1 point of the stack): ComplementNB or logistic regression on TF-IDF as extra "
        "stacked models, gradient-boosted trees as the stacker, a full multinomial logistic regression "
        "as calibrator (as good, 50-200x slower), other k / temperatures for the kNN. The aim of 0.90 "
        "is not reached: nearly half of the stack's holdout errors are confusions among the three broad "
        "classes Hardware, HR Support and Miscellaneous, whose keyword texts overlap.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=None, help="use a random sample of N tickets")
    parser.add_argument("--write", type=Path, default=None, help="update this markdown file's section")
    args = parser.parse_args()
    if not DATASET.exists():
        print(f"skipped: {DATASET} not found")
        return
    results = run(args.sample)
    print(json.dumps(results, indent=2))
    command = ".venv/bin/python benchmarks/bench_classifier.py" + (
        f" --sample {args.sample}" if args.sample else ""
    )
    command += f" --write {args.write}" if args.write else ""
    section = markdown(results, command)
    print(section)
    if args.write:
        write_section(args.write, "classifier", section)


if __name__ == "__main__":
    main()
