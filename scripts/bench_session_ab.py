"""The session round trip of two checkouts, interleaved (A, B, A, B, ...) in one sitting.

Why: bench_sandbox.py measures the round trip among minutes of other figures, and on a shared
machine the load moves more between two of its runs than a change to the session does. Here
each turn is one short process per checkout: one sandbox, 20 warm-up commands, then `--rounds`
trivial commands through `Sandbox.exec` (the same loop as bench_sandbox.py's session figure).

    python scripts/bench_session_ab.py --base-tree /path/to/other/checkout [--turns 8] [--rounds 1000] [--json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchlib import report

ROOT = Path(__file__).resolve().parents[1]

ONE_TURN = """
import asyncio, statistics, sys, time
from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox
from envfarm.sandbox.images import build_repo, load_projects

async def main(rounds):
    sb = await DockerSandbox.create(SandboxSpec(image=build_repo(load_projects()["inflection"])), run="bench")
    try:
        for _ in range(20):
            await sb.exec("true")
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            await sb.exec("true")
            times.append(time.perf_counter() - t)
    finally:
        await sb.close()
    print(statistics.median(times) * 1000)

asyncio.run(main(int(sys.argv[1])))
"""


def one_turn(tree: Path, rounds: int) -> float:
    proc = subprocess.run([sys.executable, "-c", ONE_TURN, str(rounds)], cwd=tree, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tree)}, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the session loop failed in {tree}:\n{proc.stderr[-2000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-tree", type=Path, required=True, help="the other checkout (e.g. a git worktree)")
    ap.add_argument("--turns", type=int, default=8, help="runs per checkout")
    ap.add_argument("--rounds", type=int, default=1000, help="commands per run")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    if not (args.base_tree / "envfarm").is_dir():
        ap.error(f"--base-tree {args.base_tree} holds no envfarm package: give a checkout of this project")
    base, this = [], []
    for _ in range(args.turns):
        base.append(one_turn(args.base_tree.resolve(), args.rounds))
        this.append(one_turn(ROOT, args.rounds))
    report({"base_session_exec_p50_ms": statistics.median(base), "session_exec_p50_ms": statistics.median(this),
            "this_vs_base_ratio": statistics.median(this) / statistics.median(base),
            "base_runs_ms": [round(x, 3) for x in base], "this_runs_ms": [round(x, 3) for x in this]}, args.json)


if __name__ == "__main__":
    main()
