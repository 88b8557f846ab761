"""Calibrate the duplicate threshold on the synthetic generator's duplicates and near-duplicates.

The generator marks exact re-submissions (``extra.duplicate_of``: same text minutes later) and near
copies (``extra.near_duplicate_of``: same person and problem hours or days later, own greeting and
typos). For every ticket, in creation order, the most similar earlier ticket within the duplicate
window is found (exact cosine search: the index returns the same top-1 at recall 1.0 on this size);
a prediction is correct when that ticket is the true source or another copy of it. Precision and
recall per threshold, and the threshold with the best F1 at precision >= 0.9.

    .venv/bin/python benchmarks/bench_duplicates.py [--n 4000] [--seed 3] [--window-h 72]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serving.schemas import model_text  # noqa: E402
from ticket_assets.ml.embed import get_embedder  # noqa: E402
from ticket_assets.settings import Settings  # noqa: E402
from ticket_assets.sources.synthetic import generate_tickets  # noqa: E402

THRESHOLDS = (0.85, 0.88, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--window-h", type=float, default=72.0)
    args = parser.parse_args()

    tickets = generate_tickets(args.n, seed=args.seed, days=args.days).sort("created_at")
    extra = tickets["extra"].str.json_decode(
        pl.Struct({"duplicate_of": pl.String, "near_duplicate_of": pl.String})
    )
    source = extra.struct.field("duplicate_of").fill_null(extra.struct.field("near_duplicate_of")).to_list()
    ids = tickets["ticket_id"].to_list()
    # A copy's "family" is its source: predicting any member of the family is a correct hit.
    family = {tid: (src or tid) for tid, src in zip(ids, source, strict=True)}
    texts = [model_text(t, b) for t, b in zip(tickets["title"], tickets["body"], strict=True)]
    embedder = get_embedder(Settings())
    print(f"embedding {len(texts)} tickets with {embedder.model_id} ...", flush=True)
    vectors = embedder.encode(texts)
    created = tickets["created_at"].dt.epoch("s").to_numpy().astype(np.float64)
    window = args.window_h * 3600

    best_sim = np.full(len(ids), -1.0)
    best_ok = np.zeros(len(ids), dtype=bool)
    for i in range(1, len(ids)):
        lo = np.searchsorted(created, created[i] - window)
        if lo >= i:
            continue
        sims = vectors[lo:i] @ vectors[i]
        j = int(np.argmax(sims)) + lo
        best_sim[i] = sims[j - lo]
        best_ok[i] = family[ids[j]] == family[ids[i]]
    is_copy = np.array([s is not None for s in source])
    exact = np.array([d is not None for d in extra.struct.field("duplicate_of").to_list()])
    rows = []
    for threshold in THRESHOLDS:
        predicted = best_sim >= threshold
        tp = int((predicted & best_ok & is_copy).sum())
        fp = int((predicted & ~(best_ok & is_copy)).sum())
        precision = tp / max(tp + fp, 1)
        recall = tp / max(int(is_copy.sum()), 1)
        recall_exact = int((predicted & best_ok & exact).sum()) / max(int(exact.sum()), 1)
        recall_near = int((predicted & best_ok & is_copy & ~exact).sum()) / max(
            int((is_copy & ~exact).sum()), 1
        )
        f1 = 2 * precision * recall / max(precision + recall, 1e-9)
        rows.append(
            {"threshold": threshold, "precision": round(precision, 3), "recall": round(recall, 3),
             "recall_exact": round(recall_exact, 3), "recall_near": round(recall_near, 3), "f1": round(f1, 3),
             "flagged": int(predicted.sum())}
        )  # fmt: skip
    eligible = [r for r in rows if r["precision"] >= 0.9] or rows
    chosen = max(eligible, key=lambda r: (r["f1"], r["threshold"]))
    print(f"tickets {len(ids)}: exact copies {int(exact.sum())}, near copies {int((is_copy & ~exact).sum())}")
    print("| threshold | precision | recall | recall exact | recall near | F1 | flagged |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['threshold']} | {r['precision']} | {r['recall']} | {r['recall_exact']} | {r['recall_near']} "
            f"| {r['f1']} | {r['flagged']} |"
        )
    print(json.dumps({"chosen": chosen}))


if __name__ == "__main__":
    main()
