"""Hot-path cost of the trust signals in ``TriageModel.predict`` (one ticket, embedding given).

Trains the model as the pipeline does (quick grids, stack) on synthetic tickets with the serving
embedder, then times single-ticket predictions with ``explain`` off (labels and probabilities only)
and on (plus the out-of-scope score, the nearest training tickets and the term reasons),
interleaved so load changes hit both. Also times the out-of-scope scan that names the nearest
training tickets (argpartition, ids) against the scan as it was before (partition, values only) on
the same tickets, interleaved.

    .venv/bin/python benchmarks/bench_trust_hot_path.py [--rows 4000] [--repeat 2000] [--write BENCHMARKS.md]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_out_of_scope import CONFIG, synthetic_tickets  # noqa: E402
from benchmarks.report import write_section  # noqa: E402
from ticket_assets.ml.embed import get_embedder  # noqa: E402
from ticket_assets.ml.escalation import EscalationPolicy  # noqa: E402
from ticket_assets.ml.predict import NEAREST_REASONS, _blas_controller  # noqa: E402
from ticket_assets.ml.train import train_triage_model  # noqa: E402
from ticket_assets.settings import Settings  # noqa: E402


def previous_scan(scope, embeddings: np.ndarray) -> np.ndarray:
    """The out-of-scope distance as computed before it named neighbours: values only."""
    similarity = np.asarray(embeddings, dtype=np.float32) @ scope.reference.T
    k = min(scope.k, len(scope.reference))
    return 1.0 - (-np.partition(-similarity, k - 1, axis=1)[:, :k]).mean(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--write", type=Path, help="write the BENCHMARKS.md section on nearest tickets")
    args = parser.parse_args()
    embedder = get_embedder(Settings(_env_file=None, data_dir=Path(tempfile.mkdtemp(prefix="trust-"))))
    frame = synthetic_tickets(args.rows + 200, seed=5)
    frame = frame.with_columns(ticket_id=pl.Series([f"bench-{i}" for i in range(frame.height)]))
    train, probe = frame[: args.rows], frame[args.rows :]
    model = train_triage_model(
        train, embedder.encode(train["text"].to_list()), embedder.model_id, CONFIG
    ).model
    texts = probe["text"].to_list()
    vectors = embedder.encode(texts)
    policy = EscalationPolicy.load()
    times: dict[str, list[float]] = {"off": [], "on": [], "escalation": [], "values": [], "named": []}
    scope = model.scope
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
        with _blas_controller().limit(limits=1, user_api="blas"):  # as predict runs it
            t0 = time.perf_counter()
            previous_scan(scope, vectors[j : j + 1])
            t1 = time.perf_counter()
            _, named = scope.score_and_neighbours(vectors[j : j + 1], texts[j : j + 1], NEAREST_REASONS)
            t2 = time.perf_counter()
        times["values"].append((t1 - t0) * 1000)
        times["named"].append((t2 - t1) * 1000)
    assert named[0] and named[0][0].startswith("bench-")
    p = {k: (np.percentile(v, 50), np.percentile(v, 99)) for k, v in times.items()}
    print(
        f"{args.rows} training tickets ({model.targets['topic'].candidate}), {args.repeat} single-ticket predictions"
    )
    print(f"predict, trust off: p50 {p['off'][0]:.2f} ms, p99 {p['off'][1]:.2f} ms")
    print(f"predict, trust on (out-of-scope + reasons): p50 {p['on'][0]:.2f} ms, p99 {p['on'][1]:.2f} ms")
    print(f"escalation rules: p50 {p['escalation'][0]:.3f} ms, p99 {p['escalation'][1]:.3f} ms")
    ratio = p["named"][0] / p["values"][0]
    print(
        f"out-of-scope scan over {len(scope.reference)} vectors: values only (before) p50 {p['values'][0]:.3f} ms, "
        f"with the {NEAREST_REASONS} nearest ids p50 {p['named'][0]:.3f} ms (ratio {ratio:.2f}x)"
    )
    if args.write:
        load = os.getloadavg()
        write_section(
            args.write,
            "nearest-reasons",
            f"""## Nearest training tickets in reasons (`benchmarks/bench_trust_hot_path.py`)

```bash
.venv/bin/python benchmarks/bench_trust_hot_path.py --rows {args.rows} --repeat {args.repeat} --write BENCHMARKS.md
```

`reasons` names the {NEAREST_REASONS} most similar training tickets (`nearest: <ticket id>`), taken from
the neighbours the out-of-scope kNN selects anyway: `argpartition` instead of `partition` over the same
similarities, then the top k sorted. Same run, same {args.repeat} single tickets, interleaved, one BLAS
thread, {len(scope.reference)} reference vectors; 2 cores shared with other jobs, load average
{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.

| scan | p50 ms | p99 ms |
|---|---:|---:|
| values only (before) | {p["values"][0]:.3f} | {p["values"][1]:.3f} |
| values + nearest ids (shipped) | {p["named"][0]:.3f} | {p["named"][1]:.3f} |

Ratio shipped / before at p50: **{ratio:.2f}x**. Whole `predict` with the trust signals on: p50
{p["on"][0]:.2f} ms, off: {p["off"][0]:.2f} ms.
""",
        )


if __name__ == "__main__":
    main()
