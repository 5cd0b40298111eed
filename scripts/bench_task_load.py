"""How long loading the task suite takes, in a fresh interpreter as a launch or a notebook pays it.

    python scripts/bench_task_load.py [--rounds 5] [--json]

Each round starts a new Python, imports envfarm.tasks, then times `load("builtin")` (the rows'
parsing and validation, and whatever that imports on first use), and a second load in the same
process. The scaled figure loads the builtin rows repeated (ids made unique) to at least
`--scaled-rows` tasks from one JSONL file: the size of suite the goal names.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROUND = """
import json, sys, time
t0 = time.perf_counter()
from envfarm.tasks import load
t1 = time.perf_counter()
tasks = load(sys.argv[1])
t2 = time.perf_counter()
load(sys.argv[1])
t3 = time.perf_counter()
print(json.dumps({"tasks": len(tasks), "import_s": t1 - t0, "load_s": t2 - t1, "reload_s": t3 - t2,
                  "swebench_harness_imported": "swebench.harness" in sys.modules}))
"""


def one_round(spec: str) -> dict:
    out = subprocess.run([sys.executable, "-c", ROUND, spec], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def scaled_suite(rows: int, folder: Path) -> Path:
    from envfarm.tasks.loading import BUILTIN_DIR

    lines = [json.loads(x) for f in sorted(BUILTIN_DIR.glob("*.jsonl"))
             for x in f.read_text().splitlines() if x.strip()]
    path = folder / "scaled.jsonl"
    with path.open("w") as fh:
        n = 0
        while n < rows:
            for row in lines:
                fh.write(json.dumps({**row, "instance_id": f"{row['instance_id']}__copy{n // len(lines)}"}) + "\n")
            n += len(lines)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--scaled-rows", type=int, default=1500)
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        scaled = scaled_suite(args.scaled_rows, Path(tmp))
        builtin = [one_round("builtin") for _ in range(args.rounds)]
        big = [one_round(str(scaled)) for _ in range(args.rounds)]

    def p50(rounds: list[dict], key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 3)

    out = {"rounds": args.rounds, "suite_tasks": builtin[0]["tasks"],
           "suite_load_p50_s": p50(builtin, "load_s"), "suite_reload_p50_s": p50(builtin, "reload_s"),
           "tasks_import_p50_s": p50(builtin, "import_s"),
           "scaled_tasks": big[0]["tasks"], "scaled_load_p50_s": p50(big, "load_s"),
           "swebench_harness_imported": any(r["swebench_harness_imported"] for r in builtin + big)}
    if not args.json:
        print(f"builtin suite: {out['suite_tasks']} tasks, first load {out['suite_load_p50_s']} s "
              f"(again: {out['suite_reload_p50_s']} s); {out['scaled_tasks']} tasks: {out['scaled_load_p50_s']} s")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
