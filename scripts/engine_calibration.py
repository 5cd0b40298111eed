"""Measure this machine's Docker engine: create latency at 1, 2, 4, 8, 16 concurrent creates.

Each level starts `c` sandboxes of a real task image at once (no admission control: the engine
sees all `c`), times each create until its shell answers, removes them, and repeats. The medians
become the sim engine's curve (envfarm/sandbox/sim_engine_curve.json), which
`scripts/bench_farm.py --creation-scale` gives every simulated node.

    python scripts/bench_farm.py --calibrate-engine [--calibrate-rounds 4]
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from typing import Any

from benchlib import pct

from envfarm.sandbox.sim_engine import CURVE_FILE, curve_record

LEVELS = (1, 2, 4, 8, 16)


async def _level(image: str, concurrent: int, run: str) -> list[float]:
    from envfarm.sandbox.base import SandboxSpec
    from envfarm.sandbox.docker_backend import DockerSandbox

    spec = SandboxSpec(image=image, memory="512m")

    async def one() -> tuple[float, Any]:
        t = time.perf_counter()
        sandbox = await DockerSandbox.create(spec, run=run)
        return time.perf_counter() - t, sandbox

    made = await asyncio.gather(*(one() for _ in range(concurrent)), return_exceptions=True)
    sandboxes = [m[1] for m in made if not isinstance(m, BaseException)]
    await asyncio.gather(*(sb.close() for sb in sandboxes), return_exceptions=True)
    errors = [m for m in made if isinstance(m, BaseException)]
    if errors:
        raise RuntimeError(f"{len(errors)} of {concurrent} creates failed: {errors[0]}")
    return [m[0] for m in made]


async def calibrate(rounds: int, write: bool = True) -> dict[str, Any]:
    """Measure every level `rounds` times; write the curve file; return figures (seconds)."""
    from envfarm.sandbox.docker_backend import docker_client
    from envfarm.sandbox.images import build_repo, load_projects

    image = build_repo(load_projects()["inflection"])
    run = f"bench-calibrate-{os.getpid()}"
    await _level(image, 1, run)  # one untimed create: the image's layers in the page cache
    points = []
    for c in LEVELS:
        seconds: list[float] = []
        for _ in range(rounds):
            seconds += await _level(image, c, run)
            await asyncio.sleep(0.5)  # removals settle before the next round
        points.append({"concurrent": c, "p50_s": round(statistics.median(seconds), 4),
                       "p90_s": round(pct(seconds, 0.9), 4), "creates": len(seconds)})
        print(f"engine: {c:2d} at once: create p50 {points[-1]['p50_s']:.3f} s, p90 {points[-1]['p90_s']:.3f} s")
    how = {"command": "python scripts/bench_farm.py --calibrate-engine", "image": image, "rounds": rounds,
           "what": "seconds from DockerSandbox.create until its shell answers, c creates started at once",
           "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
           "engine": docker_client().version().get("Version"), "date": time.strftime("%Y-%m-%d")}
    if write:
        CURVE_FILE.write_text(json.dumps(curve_record(points, how), indent=2) + "\n")
    return {f"engine_create_p50_s_at_{p['concurrent']}": p["p50_s"] for p in points}
