"""Out-of-scope detection: foreign tickets flagged vs in-domain held-out tickets flagged.

Two directions, each a triage model trained as the pipeline trains it (quick grids, stack):
* trained on a sample of the shared real IT-service tickets; foreign = synthetic tickets;
* trained on synthetic tickets; foreign = real tickets.
The shipped detector (ml/scope.py: 1 - mean cosine of the 10 nearest training tickets, and the share
of words unseen in training, each thresholded on held-out in-domain scores) against the obvious alternative, max softmax
probability (flag when the topic confidence is under the value that flags the same share of an
in-domain calibration split). Also AUROC (foreign vs in-domain) of both scores.

    .venv/bin/python benchmarks/bench_out_of_scope.py [--real-rows 8000] [--synthetic-rows 8000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ticket_assets.core.text import model_text  # noqa: E402
from ticket_assets.ml.embed import get_embedder  # noqa: E402
from ticket_assets.ml.train import TrainConfig, train_triage_model  # noqa: E402
from ticket_assets.settings import Settings  # noqa: E402
from ticket_assets.sources.synthetic import generate_tickets  # noqa: E402

REAL = ROOT.parent / "shared" / "datasets" / "it-service-tickets" / "train.csv.gz"
CONFIG = TrainConfig(cv_folds=2, tfidf_c_grid=(0.3,), embedding_c_grid=(4.0,), candidates=("stack",))


def real_tickets(n: int, seed: int) -> pl.DataFrame:
    frame = pl.read_csv(REAL).select(pl.col("text").cast(pl.String), pl.col("topic").cast(pl.String))
    return frame.sample(n=min(n, frame.height), seed=seed, shuffle=True)


def synthetic_tickets(n: int, seed: int) -> pl.DataFrame:
    frame = generate_tickets(n, seed=seed)
    texts = [model_text(t, b) for t, b in zip(frame["title"], frame["body"], strict=True)]
    return pl.DataFrame({"text": texts, "topic": frame["topic"], "urgency": frame["urgency"]})


def direction(name: str, domain: pl.DataFrame, foreign: pl.DataFrame, embedder, quantile: float) -> dict:
    n = domain.height
    n_train, n_calib = int(n * 0.7), int(n * 0.1)
    train, calib, held = domain[:n_train], domain[n_train : n_train + n_calib], domain[n_train + n_calib :]
    t0 = time.perf_counter()
    vectors = {
        key: embedder.encode(part["text"].to_list())
        for key, part in {"train": train, "calib": calib, "held": held, "foreign": foreign}.items()
    }
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = train_triage_model(train, vectors["train"], embedder.model_id, CONFIG).model
    train_s = time.perf_counter() - t0

    def predict(key: str, part: pl.DataFrame):
        return model.predict(
            part["text"].to_list(), embeddings=vectors[key], embedding_model_id=embedder.model_id
        )

    pred = {
        key: predict(key, part) for key, part in {"calib": calib, "held": held, "foreign": foreign}.items()
    }
    oos = {k: np.array([p.out_of_scope_score for p in v]) for k, v in pred.items()}
    msp = {k: np.array([p.topic_confidence for p in v]) for k, v in pred.items()}
    msp_threshold = float(np.quantile(msp["calib"], 1 - quantile))
    t0 = time.perf_counter()
    for row in vectors["held"][:500]:
        model.scope.score(row[None, :], ["printer jam on floor two"])
    per_ticket_ms = (time.perf_counter() - t0) * 1000 / min(500, len(vectors["held"]))
    auroc = lambda held, foreign: roc_auc_score(  # noqa: E731
        np.r_[np.zeros(len(held)), np.ones(len(foreign))], np.r_[held, foreign]
    )
    return {
        "name": name,
        "n": (train.height, held.height, foreign.height),
        "oos_foreign": float(np.mean(oos["foreign"] > 1.0)),
        "oos_held": float(np.mean(oos["held"] > 1.0)),
        "oos_auroc": auroc(oos["held"], oos["foreign"]),
        "msp_foreign": float(np.mean(msp["foreign"] < msp_threshold)),
        "msp_held": float(np.mean(msp["held"] < msp_threshold)),
        "msp_auroc": auroc(-msp["held"], -msp["foreign"]),
        "mean_conf_foreign": float(msp["foreign"].mean()),
        "threshold": model.scope.calibration,
        "msp_threshold": msp_threshold,
        "score_ms": per_ticket_ms,
        "embed_s": embed_s,
        "train_s": train_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--real-rows", type=int, default=8000)
    parser.add_argument("--synthetic-rows", type=int, default=8000)
    parser.add_argument("--foreign-rows", type=int, default=2000)
    args = parser.parse_args()
    if not REAL.exists():
        raise SystemExit(f"the shared real dataset is not at {REAL}")
    settings = Settings(_env_file=None, data_dir=Path(tempfile.mkdtemp(prefix="oos-")))
    embedder = get_embedder(settings)
    quantile = CONFIG.out_of_scope_quantile
    real = real_tickets(args.real_rows + args.foreign_rows, seed=0)
    synthetic = synthetic_tickets(args.synthetic_rows + args.foreign_rows, seed=11)
    rows = [
        direction(
            "trained on real, foreign = synthetic",
            real[: args.real_rows].select("text", "topic"),
            synthetic[args.synthetic_rows :],
            embedder,
            quantile,
        ),
        direction(
            "trained on synthetic, foreign = real",
            synthetic[: args.synthetic_rows],
            real[args.real_rows :],
            embedder,
            quantile,
        ),
    ]
    print(f"embedder {embedder.model_id}; quantile {quantile}; k {CONFIG.out_of_scope_k}")
    print(
        "| direction | train / held-out / foreign | detector: foreign flagged | in-domain flagged | AUROC "
        "| max-softmax: foreign flagged | in-domain flagged | AUROC | mean confidence on foreign | score ms/ticket |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {' / '.join(map(str, r['n']))} | {r['oos_foreign']:.1%} | {r['oos_held']:.1%} "
            f"| {r['oos_auroc']:.3f} | {r['msp_foreign']:.1%} | {r['msp_held']:.1%} | {r['msp_auroc']:.3f} "
            f"| {r['mean_conf_foreign']:.2f} | {r['score_ms']:.2f} |"
        )
    for r in rows:
        print(
            f"{r['name']}: calibration {r['threshold']}, msp threshold {r['msp_threshold']:.3f}, "
            f"embed {r['embed_s']:.0f} s, train {r['train_s']:.0f} s"
        )


if __name__ == "__main__":
    main()
