"""Per-step overhead of CodingEnv next to a bare sandbox call, in one run on one sandbox.

    python scripts/bench_env.py [--steps 300] [--json]

A step of `bash true` through `env.astep` (parse the raw text, dispatch, run, format, build
info) is timed alternately with a bare `sandbox.exec("true")` on the same sandbox. The env's
overhead is the step's wall time minus the command's own round trip (`ExecResult.seconds`), so
it excludes the command itself. An editor `view` step is timed as well (it reads the file
through the archive API). `--json` prints one JSON object with the figures as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time

from envfarm.env import CodingEnv
from envfarm.tasks.loading import load

BASH_TRUE = '<tool_call>{"name": "bash", "arguments": {"command": "true"}}</tool_call>'
VIEW = ('<tool_call>{"name": "str_replace_editor", "arguments": {"command": "view", '
        '"path": "setup.py", "view_range": [1, 20]}}</tool_call>')


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def bench(steps: int, view_steps: int) -> dict[str, float | int | str]:
    task = load("builtin")[0]
    env = CodingEnv(max_turns=10 * steps + view_steps + 100, run="bench")
    await env.areset(options={"task": task})
    sandbox = env._sandbox
    assert sandbox is not None
    step_s, command_s, overhead_s, bare_s, view_s = [], [], [], [], []
    try:
        for _ in range(20):  # warm up both paths
            await env.astep(BASH_TRUE)
            await sandbox.exec("true")
        for _ in range(steps):
            t0 = time.perf_counter()
            _, _, _, _, info = await env.astep(BASH_TRUE)
            wall = time.perf_counter() - t0
            cmd = info["tool_calls"][0]["command_seconds"]
            step_s.append(wall)
            command_s.append(cmd)
            overhead_s.append(wall - cmd)
            t0 = time.perf_counter()
            await sandbox.exec("true")
            bare_s.append(time.perf_counter() - t0)
        for _ in range(view_steps):
            t0 = time.perf_counter()
            await env.astep(VIEW)
            view_s.append(time.perf_counter() - t0)
    finally:
        await env.aclose()
    ms = 1000.0
    return {
        "steps": steps,
        "env_step_overhead_p50_ms": statistics.median(overhead_s) * ms,
        "env_step_overhead_p95_ms": pct(overhead_s, 95) * ms,
        "env_step_p50_ms": statistics.median(step_s) * ms,
        "env_step_command_p50_ms": statistics.median(command_s) * ms,
        "sandbox_exec_p50_ms": statistics.median(bare_s) * ms,
        "sandbox_exec_p95_ms": pct(bare_s, 95) * ms,
        "editor_view_step_p50_ms": statistics.median(view_s) * ms if view_s else 0.0,
        "machine": f"{platform.machine()} {platform.system()}, python {platform.python_version()}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--view-steps", type=int, default=50)
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    result = asyncio.run(bench(args.steps, args.view_steps))
    if args.json:
        print(json.dumps(result))
        return
    print(f"env step overhead   p50 {result['env_step_overhead_p50_ms']:.3f} ms, "
          f"p95 {result['env_step_overhead_p95_ms']:.3f} ms (step minus the command's own round trip)")
    print(f"env step (bash true) p50 {result['env_step_p50_ms']:.3f} ms")
    print(f"bare sandbox.exec    p50 {result['sandbox_exec_p50_ms']:.3f} ms, "
          f"p95 {result['sandbox_exec_p95_ms']:.3f} ms")
    print(f"editor view step     p50 {result['editor_view_step_p50_ms']:.3f} ms")


if __name__ == "__main__":
    main()
