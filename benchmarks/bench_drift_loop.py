"""Time from a drift verdict to the new champion serving, on the real loop.

Runs `ticketops demo drift` end to end in a fresh data directory (embedded PostgreSQL, real uvicorn API,
real Dagster daemon running the drift schedule every minute and the sensors) and reports the
intervals between the steps it observed.

    .venv/bin/python benchmarks/bench_drift_loop.py [--scenario new_topic_surge]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="new_topic_surge")
    parser.add_argument("--traffic", type=int, default=600)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a new temporary directory")
    args = parser.parse_args()

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="ticketops-drift-loop-"))
    os.environ["TICKETOPS_DATA_DIR"] = str(data_dir)
    os.environ.pop("DATABASE_URL", None)  # the embedded default, as a user would run it
    os.environ.setdefault("TICKETOPS_API_PORT", "8077")
    from ticket_assets.demo import run_drift_demo
    from ticket_assets.settings import reset_settings_cache

    reset_settings_cache()
    started = time.monotonic()
    report = run_drift_demo(scenario=args.scenario, traffic=args.traffic)
    marks = {title: at for title, _, at in report.steps}
    result = {
        "scenario": args.scenario,
        "traffic": args.traffic,
        "total_s": round(time.monotonic() - started, 1),
        "traffic_sent_to_drift_verdict_s": round(marks["drift detected"] - marks["feedback"], 1),
        "drift_verdict_to_retrain_requested_s": round(
            marks["retraining requested"] - marks["drift detected"], 1
        ),
        "retrain_requested_to_promoted_s": round(marks["promoted"] - marks["retraining requested"], 1),
        "promoted_to_serving_s": round(marks["hot reload"] - marks["promoted"], 1),
        "drift_verdict_to_new_champion_serving_s": round(marks["hot reload"] - marks["drift detected"], 1),
        "steps": [{"step": t, "detail": d, "at_s": round(a, 1)} for t, d, a in report.steps],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
