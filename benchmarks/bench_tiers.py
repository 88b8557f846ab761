"""Confidence tiers on real tickets: share of held-out tickets in tier ``auto`` and their precision.

Data: the public IT-service tickets (``../shared/datasets/it-service-tickets/train.csv.gz``), topic.
Split: ``ml.splits.stratified_hash_split`` (the rule ``marts.training_set`` applies to an undated
export), 20 % held out. Model: ``ml.train.train_triage_model`` (the production training code;
``--embeddings`` adds the embedding and stacked candidates, otherwise TF-IDF only).

Tiers are set on held-out predictions (``ml.tiers.fit_tiers``, as ``ml.pipeline.attach_tiers`` does
in production). To measure precision on tickets the thresholds were not set on, the holdout is cut
in two halves (the same hash rule, 50 %); thresholds fitted on one half are applied to the other,
both ways, and the two halves' counts pooled. The obvious alternative, measured the same way: one
global confidence threshold, the lowest whose precision over all predictions reaches the target.

    .venv/bin/python benchmarks/bench_tiers.py [--embeddings] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.report import write_section  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.bench_classifier import DATASET, cached_embeddings  # noqa: E402
from ticket_assets.core.labels import normalize_label  # noqa: E402
from ticket_assets.ml.splits import stratified_hash_split  # noqa: E402
from ticket_assets.ml.tiers import AUTO, TierConfig, fit_tiers, thresholds, tier_of  # noqa: E402
from ticket_assets.ml.train import TrainConfig, train_triage_model  # noqa: E402


def global_threshold(
    confidence: np.ndarray, correct: np.ndarray, precision: float, minimum: int
) -> float | None:
    """The lowest single threshold whose precision over every prediction at or above it reaches ``precision``."""
    order = np.argsort(-confidence, kind="stable")
    conf, hits = confidence[order], correct[order].astype(np.float64)
    counts = np.arange(1, len(conf) + 1)
    precisions = np.cumsum(hits) / counts
    last_of_ties = np.append(conf[1:] != conf[:-1], True)
    ok = np.flatnonzero(last_of_ties & (precisions >= precision) & (counts >= minimum))
    return float(conf[ok[-1]]) if ok.size else None


def cross_fitted(
    labels: list[str], truth: np.ndarray, probabilities: np.ndarray, halves: np.ndarray, config: TierConfig
) -> dict:
    predicted = np.asarray(labels, dtype=object)[probabilities.argmax(axis=1)]
    confidence = probabilities.max(axis=1)
    correct = predicted == truth
    counts = {"per_class": [0, 0], "global": [0, 0]}  # [auto tickets, correct auto tickets]
    # rule -> predicted class -> [auto tickets, correct]: a global threshold can hide a weak class.
    by_class: dict[str, dict[str, list[int]]] = {"per_class": {}, "global": {}}
    per_half = []
    for fit_half, measure_half in (("train", "test"), ("test", "train")):
        fit, measure = halves == fit_half, halves == measure_half
        table = thresholds(fit_tiers("topic", labels, truth[fit], probabilities[fit], config)).get(
            "topic", {}
        )
        auto = np.array(
            [
                tier_of(table.get(str(p)), float(c)) == AUTO
                for p, c in zip(predicted[measure], confidence[measure], strict=True)
            ]
        )
        threshold = global_threshold(
            confidence[fit], correct[fit], config.auto_precision, config.min_examples
        )
        auto_global = (
            confidence[measure] >= threshold if threshold is not None else np.zeros(measure.sum(), bool)
        )
        for name, mask in (("per_class", auto), ("global", auto_global)):
            counts[name][0] += int(mask.sum())
            counts[name][1] += int(correct[measure][mask].sum())
            for label in labels:
                mine = mask & (predicted[measure] == label)
                entry = by_class[name].setdefault(label, [0, 0])
                entry[0] += int(mine.sum())
                entry[1] += int(correct[measure][mine].sum())
        per_half.append(
            {
                "fit_on": fit_half,
                "n_measured": int(measure.sum()),
                "auto_classes": sum(1 for t in table.values() if AUTO in t),
                "per_class_auto_share": float(auto.mean()),
                "per_class_auto_precision": float(correct[measure][auto].mean()) if auto.any() else None,
                "global_threshold": threshold,
                "global_auto_share": float(auto_global.mean()),
                "global_auto_precision": float(correct[measure][auto_global].mean())
                if auto_global.any()
                else None,
            }
        )
    n = len(truth)
    pooled = {}
    for name, c in counts.items():
        classes = {label: v[1] / v[0] for label, v in by_class[name].items() if v[0]}
        worst = min(classes, key=classes.get) if classes else None
        pooled[name] = {
            "auto_share": c[0] / n,
            "auto_precision": c[1] / c[0] if c[0] else None,
            "auto_tickets": c[0],
            "worst_class": worst,
            "worst_class_precision": classes[worst] if worst else None,
        }
    return {"pooled": pooled, "halves": per_half}


def run(use_embeddings: bool) -> dict:
    frame = pl.read_csv(DATASET).select("ticket_id", "text", "topic").drop_nulls()
    ids = frame["ticket_id"].cast(pl.Utf8).to_list()
    labels = np.array([normalize_label(t) for t in frame["topic"].to_list()], dtype=object)
    split = np.array(stratified_hash_split(ids, labels.tolist(), 0.2))
    train_rows, test_rows = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    texts = frame["text"].to_list()
    vectors, embedding_id = None, None
    if use_embeddings:
        vectors, embedding_id, _ = cached_embeddings(texts)
    config = TrainConfig() if use_embeddings else TrainConfig(candidates=("tfidf",))
    train = pl.DataFrame({"text": [texts[i] for i in train_rows], "topic": labels[train_rows].tolist()})
    started = time.perf_counter()
    outcome = train_triage_model(
        train, vectors[train_rows] if vectors is not None else None, embedding_id, config
    )
    train_seconds = time.perf_counter() - started
    model = outcome.model
    test_texts = [texts[i] for i in test_rows]
    probabilities = model.predict_proba(
        test_texts, vectors[test_rows] if vectors is not None else None, embedding_id
    )["topic"]
    truth = labels[test_rows]
    topic_labels = model.labels("topic")
    accuracy = float(np.mean(np.asarray(topic_labels, dtype=object)[probabilities.argmax(axis=1)] == truth))
    halves = np.array(stratified_hash_split([ids[i] for i in test_rows], truth.tolist(), 0.5))
    tier_config = TierConfig(
        config.tier_auto_precision, config.tier_suggest_precision, config.tier_min_examples
    )
    result = cross_fitted(topic_labels, truth, probabilities, halves, tier_config)
    # What the registered model ships: thresholds fitted on the whole holdout.
    shipped = fit_tiers("topic", topic_labels, truth, probabilities, tier_config)
    return {
        "n_train": int(len(train_rows)),
        "n_holdout": int(len(test_rows)),
        "classes": len(topic_labels),
        "chosen": outcome.reports["topic"].chosen,
        "train_seconds": round(train_seconds, 1),
        "holdout_accuracy": accuracy,
        "tier_config": tier_config.__dict__,
        **result,
        "shipped_table": shipped,
    }


def markdown(result: dict, command: str) -> str:
    pooled = result["pooled"]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "–"

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f} %"

    lines = [
        "## Confidence tiers on real tickets (`benchmarks/bench_tiers.py`)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs during the run)  ",
        f"Data: public IT-service tickets, topic, {result['classes']} classes; stratified hash split "
        f"{result['n_train']} train / {result['n_holdout']} holdout; candidate `{result['chosen']}` "
        f"(trained in {result['train_seconds']} s), holdout accuracy {result['holdout_accuracy']:.4f}.  ",
        "Thresholds fitted on one half of the holdout, measured on the other, both ways, pooled "
        f"(auto precision target {result['tier_config']['auto_precision']}, "
        f"min {result['tier_config']['min_examples']} held-out predictions per class).",
        "",
        "| rule | held-out tickets in `auto` | measured precision on them | weakest class's precision in `auto` |",
        "|---|---|---|---|",
        f"| per-class tiers (`ml.tiers`) | **{pct(pooled['per_class']['auto_share'])}** | "
        f"**{pct(pooled['per_class']['auto_precision'])}** | {pct(pooled['per_class']['worst_class_precision'])} "
        f"({pooled['per_class']['worst_class']}) |",
        f"| one global threshold | {pct(pooled['global']['auto_share'])} | {pct(pooled['global']['auto_precision'])} "
        f"| {pct(pooled['global']['worst_class_precision'])} ({pooled['global']['worst_class']}) |",
        "",
        f"Ratio per-class / global: {ratio(pooled['per_class']['auto_share'], pooled['global']['auto_share'])} "
        "the auto share. On this 8-class set a single threshold is as good overall; the per-class "
        "rule's gain is the per-class guarantee (each class's own held-out precision, rare classes "
        "held out of `auto`), visible only in the weakest class's precision.",
        "",
        "Per class, as shipped (thresholds on the whole holdout):",
        "",
        "| class | auto threshold | precision | coverage | suggest threshold | n |",
        "|---|---|---|---|---|---|",
    ]
    rows = {(r["label"], r["tier"]): r for r in result["shipped_table"]}
    for label in sorted({label for label, _ in rows}):
        auto, suggest = rows[(label, "auto")], rows[(label, "suggest")]

        def fmt(value: float | None) -> str:
            return "–" if value is None else f"{value:.3f}"

        lines.append(
            f"| {label} | {fmt(auto['threshold'])} | {fmt(auto['precision'])} | {auto['coverage']:.2f} | "
            f"{fmt(suggest['threshold'])} | {auto['n']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", action="store_true", help="full candidate set (embeds 38k texts)")
    parser.add_argument("--write", type=Path, default=None, help="update this markdown file's section")
    args = parser.parse_args()
    if not DATASET.exists():
        print(f"skipped: {DATASET} not found")
        return
    result = run(args.embeddings)
    print(json.dumps({k: v for k, v in result.items() if k != "shipped_table"}, indent=2, default=str))
    command = ".venv/bin/python benchmarks/bench_tiers.py" + (" --embeddings" if args.embeddings else "")
    command += f" --write {args.write}" if args.write else ""
    section = markdown(result, command)
    print(section)
    if args.write:
        write_section(args.write, "tiers", section)


if __name__ == "__main__":
    main()
