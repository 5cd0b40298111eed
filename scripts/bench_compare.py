"""Compare two commits with the same benchmarks, interleaved in one sitting (A, B, A, B, ...).

Why interleaved: these machines are shared and noisy, so figures taken minutes apart differ more
than most changes do. Each round runs every benchmark on the base commit, then on this checkout;
the report is, per figure, the median of each side and the ratio of the medians (this / base).

    python scripts/bench_compare.py --base afe78db --rounds 3 \\
        --bench "bench_sandbox.py --rounds 300 --lifecycles 8 --gradings 2" --bench "bench_env.py --steps 100"

The base commit is checked out in a temporary git worktree; each benchmark runs with that tree
first on PYTHONPATH (the images and the virtual environment are shared). Every figure a benchmark
prints in its `--json` line is compared; `--json` here prints one object with all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(tree: Path, command: str, timeout: float) -> dict[str, float]:
    """Run `scripts/<command> --json` from `tree`; its numeric figures."""
    argv = shlex.split(command)
    script = tree / "scripts" / argv[0]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, str(script), *argv[1:], "--json"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{command} in {tree} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    last = proc.stdout.strip().splitlines()[-1]
    figures = json.loads(last)
    return {k: float(v) for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the commit to compare against (any git revision)")
    ap.add_argument("--bench", action="append", required=True,
                    help="a benchmark under scripts/ with its arguments (repeatable)")
    ap.add_argument("--rounds", type=int, default=3, help="A/B rounds (default: 3)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per benchmark run")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()

    base_dir = Path(tempfile.mkdtemp(prefix="envfarm-bench-base-"))
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base_dir), args.base], cwd=ROOT, check=True)
    runs: dict[str, dict[str, dict[str, list[float]]]] = {b: {"base": {}, "this": {}} for b in args.bench}
    try:
        for r in range(args.rounds):
            for bench in args.bench:
                for side, tree in (("base", base_dir), ("this", ROOT)):
                    figures = run_bench(tree, bench, args.timeout)
                    for key, value in figures.items():
                        runs[bench][side].setdefault(key, []).append(value)
                    print(f"[bench_compare] round {r + 1}/{args.rounds} {side:4} {bench}: "
                          + ", ".join(f"{k}={v:g}" for k, v in list(figures.items())[:4]), file=sys.stderr)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base_dir)], cwd=ROOT, capture_output=True)

    report: dict[str, float | int | str] = {"base": args.base, "rounds": args.rounds}
    for bench, sides in runs.items():
        name = Path(shlex.split(bench)[0]).stem.removeprefix("bench_")
        print(f"\n{bench}\n  {'figure':44} {'base p50':>12} {'this p50':>12} {'this/base':>10}")
        for key in sorted(set(sides["base"]) & set(sides["this"])):
            a, b = statistics.median(sides["base"][key]), statistics.median(sides["this"][key])
            ratio = b / a if a else float("nan")
            print(f"  {key:44} {a:12.4g} {b:12.4g} {ratio:10.3f}")
            report[f"{name}.{key}_this_vs_base_ratio"] = round(ratio, 4)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
