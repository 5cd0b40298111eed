"""Creation at cluster scale, simulated: ROCK's protocol on hundreds of modelled nodes.

N sandbox creations requested at once (N = 1,000 / 4,000 / 8,000 / 16,000 / 20,000) on 250
simulated nodes of 64 slots (313 for 20,000), each node one modelled Docker engine whose create
latency follows the curve measured on this machine's engine (envfarm/sandbox/sim_engine_curve.json,
`--calibrate-engine` re-measures it). What drives them is the farm's own code, in one process:
EnvFarm.run's loop and Scheduling, one EnvHostImpl per node with its WarmPool and AdmissionControl
(Docker's defaults), the sim backend (envfarm.farm.sim_cluster); only Ray's transport is left out.
Time is virtual (envfarm.sandbox.sim_clock): the figures are what the farm makes creates wait for
(admission, queues) on top of the modelled engines, plus the driver's placements, whose real CPU
time is charged to the clock (they run one after another on a cluster's driver too); the hosts'
CPU is not (each node's runs on that node, in parallel) and is reported apart, per creation.

Each creation's latency runs from the request (the start of the run) to its sandbox being handed
to its episode. Next to the farm's P50/P99 stands the model's lower bound: the best P50/P99 that
the curve alone gives for the same creates spread evenly over the nodes (EngineCurve.schedule_bound).
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any

from benchlib import pct

from envfarm.farm.host import EnvHostImpl
from envfarm.farm.scheduler import FarmConfig
from envfarm.farm.sim_cluster import SimClusterFarm
from envfarm.sandbox.sim_clock import run_virtual
from envfarm.sandbox.sim_engine import EngineCurve
from envfarm.tasks.loading import load_builtin

ROCK_LEVELS = (1000, 4000, 8000, 16000, 20000)
SLOTS_PER_NODE = 64


def nodes_for(creations: int) -> int:
    """250 nodes of 64 slots (16,000) up to 16,000 creations, 313 (20,032) above."""
    return 250 if creations <= 250 * SLOTS_PER_NODE else 313


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _creations(n: int, nodes: int, curve: EngineCurve, max_starting: int | None,
                     create_rate: float | None) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    ready: list[float] = []
    all_ready = asyncio.Event()
    t0 = loop.time()

    class TimedHost(EnvHostImpl):
        """Notes when an episode gets its sandbox (the host counts it as running then)."""

        def _count_running(self, delta: int) -> None:
            super()._count_running(delta)
            if delta > 0:
                ready.append(loop.time() - t0)
                if len(ready) >= n:
                    all_ready.set()

    profile = {"create_curve": curve.points, "spread": 0.0}  # each create: the curve's median
    cfg = FarmConfig(envs=nodes * SLOTS_PER_NODE, backend="sim", policy="sim", sim_profile=profile,
                     policy_kwargs={"think_s": 3600.0, "turns": 1, "spread": 0.0},  # hold every sandbox
                     warm_fraction=0.0, max_starting=max_starting, create_rate=create_rate)
    farm = SimClusterFarm(cfg, nodes, TimedHost, charge_driver_cpu=True)
    await farm.start()
    failed: list[str] = []

    async def consume() -> None:
        async for record in farm.run(load_builtin(), episodes=n):
            if record.error_kind:
                failed.append(f"{record.error_kind}: {record.error}")

    cpu0, wall0 = _cpu_s(), time.perf_counter()
    t0 = loop.time()
    runner = asyncio.create_task(consume())
    waiter = asyncio.create_task(all_ready.wait())
    await asyncio.wait([runner, waiter], return_when=asyncio.FIRST_COMPLETED)
    cpu, wall = _cpu_s() - cpu0, time.perf_counter() - wall0
    peak = max(h.impl.backend.engine.peak for h in farm.hosts)
    admission = farm.host_cfgs[0]
    runner.cancel()  # every sandbox is up: the episodes need not go on (nothing real is held)
    waiter.cancel()
    base, extra = divmod(n, nodes)
    bound = curve.schedule_bound([base + (1 if i < extra else 0) for i in range(nodes)])
    return {
        "creations": n, "nodes": nodes, "slots": nodes * SLOTS_PER_NODE, "created": len(ready),
        "success_rate": len(ready) / n, "failures": failed[:3],
        "p50_s": pct(ready, 0.50) if ready else None, "p99_s": pct(ready, 0.99) if ready else None,
        "bound_p50_s": bound["p50_s"], "bound_p99_s": bound["p99_s"],
        "engine_peak_concurrent": peak, "max_starting": admission.max_starting,
        "create_rate_per_s": admission.create_rate,
        "cpu_per_creation_ms": cpu / max(1, len(ready)) * 1000, "real_wall_s": wall,
        # the driver's CPU for placing them (charged to the virtual clock: see SimClusterFarm)
        "driver_placement_cpu_s": farm.driver_cpu_s,
    }


def creation_scale(levels: tuple[int, ...] = ROCK_LEVELS, caps: tuple[str, ...] = ("curve", "docker"),
                   create_rate: float | None = None) -> dict[str, Any]:
    """Run every level (each on a fresh virtual-time loop) under each admission cap: `curve` (the
    engine curve's best level, what the sim backend takes for a modelled engine), `docker` (the
    Docker backend's default) or a number. Figures of the first cap have plain keys
    (creation_<N>_p99_s); the others' carry the cap (creation_<N>_cap<M>_p99_s)."""
    from envfarm.sandbox.docker_backend import DockerBackend

    create_rate = create_rate or DockerBackend.create_rate
    curve = EngineCurve.load()
    figures: dict[str, Any] = {"creation_simulated": True,
                               "creation_engine_curve_s": {str(c): s for c, s in curve.points}}
    for i, cap in enumerate(caps):
        max_starting = {"curve": curve.best_concurrency(), "docker": DockerBackend.max_starting}.get(cap)
        max_starting = max_starting or int(cap)
        for n in levels:
            r = run_virtual(_creations(n, nodes_for(n), curve, max_starting, create_rate))
            print(f"creation (simulated) {n:6d} on {r['nodes']} nodes, {max_starting} in flight per node: p50 "
                  f"{r['p50_s']:.2f} s (bound {r['bound_p50_s']:.2f}), p99 {r['p99_s']:.2f} s (bound "
                  f"{r['bound_p99_s']:.2f}), success {r['success_rate']:.4f}, engine peak "
                  f"{r['engine_peak_concurrent']}, driver placement {r['driver_placement_cpu_s']:.2f} s CPU, "
                  f"cpu/creation {r['cpu_per_creation_ms']:.2f} ms, "
                  f"real {r['real_wall_s']:.1f} s", flush=True)
            key = f"creation_{n}" if i == 0 else f"creation_{n}_cap{max_starting}"
            figures.update({
                f"{key}_nodes": r["nodes"], f"{key}_max_starting": max_starting,
                f"{key}_success_rate": r["success_rate"],
                f"{key}_p50_s": r["p50_s"], f"{key}_p99_s": r["p99_s"],
                f"{key}_bound_p50_s": r["bound_p50_s"], f"{key}_bound_p99_s": r["bound_p99_s"],
                f"{key}_overhead_p50_s": r["p50_s"] - r["bound_p50_s"],
                f"{key}_overhead_p99_s": r["p99_s"] - r["bound_p99_s"],
                f"{key}_engine_peak_concurrent": r["engine_peak_concurrent"],
                f"{key}_driver_placement_cpu_s": r["driver_placement_cpu_s"],
                f"{key}_cpu_per_creation_ms": r["cpu_per_creation_ms"], f"{key}_real_wall_s": r["real_wall_s"],
            })
            if r["failures"]:
                figures[f"{key}_first_failures"] = r["failures"]
    return figures
