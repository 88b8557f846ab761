"""Hot-path cost of the trust signals in ``TriageModel.predict`` (one ticket, embedding given).

Trains the model as the pipeline does (quick grids, stack) on synthetic tickets with the serving
embedder, then times single-ticket predictions with ``explain`` off (labels and probabilities only)
and on (plus the out-of-scope score and the term reasons), interleaved so load changes hit both.

    .venv/bin/python benchmarks/bench_trust_hot_path.py [--rows 4000] [--repeat 2000]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_out_of_scope import CONFIG, synthetic_tickets  # noqa: E402
from ticket_assets.ml.embed import get_embedder  # noqa: E402
from ticket_assets.ml.escalation import EscalationPolicy  # noqa: E402
from ticket_assets.ml.train import train_triage_model  # noqa: E402
from ticket_assets.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    embedder = get_embedder(Settings(_env_file=None, data_dir=Path(tempfile.mkdtemp(prefix="trust-"))))
    frame = synthetic_tickets(args.rows + 200, seed=5)
    train, probe = frame[: args.rows], frame[args.rows :]
    model = train_triage_model(
        train, embedder.encode(train["text"].to_list()), embedder.model_id, CONFIG
    ).model
    texts = probe["text"].to_list()
    vectors = embedder.encode(texts)
    policy = EscalationPolicy.load()
    times: dict[str, list[float]] = {"off": [], "on": [], "escalation": []}
    for i in range(args.repeat):
        j = i % len(texts)
        for explain in (False, True):
            t0 = time.perf_counter()
            model.predict(
                [texts[j]],
                embeddings=vectors[j : j + 1],
                embedding_model_id=embedder.model_id,
                explain=explain,
            )
            times["on" if explain else "off"].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        policy.apply(texts[j], "low")
        times["escalation"].append((time.perf_counter() - t0) * 1000)
    p = {k: (np.percentile(v, 50), np.percentile(v, 99)) for k, v in times.items()}
    print(
        f"{args.rows} training tickets ({model.targets['topic'].candidate}), {args.repeat} single-ticket predictions"
    )
    print(f"predict, trust off: p50 {p['off'][0]:.2f} ms, p99 {p['off'][1]:.2f} ms")
    print(f"predict, trust on (out-of-scope + reasons): p50 {p['on'][0]:.2f} ms, p99 {p['on'][1]:.2f} ms")
    print(f"escalation rules: p50 {p['escalation'][0]:.3f} ms, p99 {p['escalation'][1]:.3f} ms")


if __name__ == "__main__":
    main()
