"""Validated tasks per hour per worker, from the state files `scripts/generate_suite.py` keeps.

    python scripts/generate_suite.py --projects h11 tinydb --per-project 4 --workers 1 --state-dir S --no-summary
    python scripts/bench_suitegen.py S [S2 ...] --json

Every finished candidate is one record with the seconds its validation held a worker (sandboxes,
test runs, gold and empty grading), so tasks per worker-hour = accepted / sum(seconds) * 3600,
whatever the number of workers. Baselines and the leak scan per image are not in the records:
they are a fixed cost per project (about two suite runs and one image scan).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from envfarm.suitegen.rates import figures
from envfarm.suitegen.suite import read_state_records


def rates(state_dirs: list[Path]) -> dict:
    records = [rec for d in state_dirs for f in sorted(d.glob("*.state.jsonl*")) for rec in read_state_records(f)
               if not rec.get("restated")]  # a restating is no validation
    fig = figures(records, by_project=True)
    secs = [rec.get("seconds", 0.0) for rec in records]
    return {
        "projects": len(fig["per_project"]),
        "candidates": fig["candidates_tried"],
        "accepted": fig["validated_tasks"],
        "yield": fig["yield"],
        "worker_hours": round(fig["sandbox_s"] / 3600, 3),
        "tasks_per_worker_hour": round(fig["tasks_per_worker_hour_of_validation"], 1),
        "timed_out_share_of_sandbox_time": fig["timed_out_share_of_sandbox_time"],
        "median_candidate_s": round(statistics.median(secs), 1) if secs else 0.0,
        "per_project": {k: {"accepted": v["validated_tasks"], "tried": v["candidates_tried"],
                            "worker_s": round(v["sandbox_s"])} for k, v in fig["per_project"].items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("state_dirs", nargs="+", type=Path, help="--state-dir folders of generate_suite.py runs")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    missing = [str(d) for d in args.state_dirs if not any(d.glob("*.state.jsonl*"))]
    if missing:
        ap.error(f"no *.state.jsonl(.gz) in {missing}: pass generate_suite.py's --state-dir folders")
    out = rates(args.state_dirs)
    if not args.json:
        for name, p in out["per_project"].items():
            print(f"{name:20s} {p['accepted']:3d}/{p['tried']:3d} accepted, {p['worker_s']:5d} worker-s")
    print(json.dumps(out) if args.json else {k: v for k, v in out.items() if k != "per_project"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
