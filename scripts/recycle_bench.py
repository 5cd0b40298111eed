"""An episode's sandbox as the farm's warm pool gives it, fresh against recycled, for
scripts/bench_sandbox.py.

Each episode, one after another, as a host runs it: acquire a warm sandbox of the task's image,
prepare the repository (the task's bug committed), one edit, release; the pool then closes the
sandbox and creates a fresh one behind it (fresh), or resets it and queues it again (recycled,
see envfarm.sandbox.docker_recycle). The loop waits for that background work before the next
episode, so the machine's CPU per episode is the whole of it: `episode_sandbox_*_cpu_ms` counts
acquire to release and the pool's work after it, repository preparation and the edit included
(an upper bound on the sandbox's own share). The two modes alternate episode by episode so that
the shared machine's noise falls on both alike.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from benchlib import machine_cpu_s

from envfarm.farm.admission import AdmissionControl
from envfarm.farm.pool import WarmPool
from envfarm.sandbox.docker_backend import DockerSandbox
from envfarm.tasks.schema import Task
from envfarm.tasks.setup import prepare_repository


async def _create(spec, task_id):
    return await DockerSandbox.create(spec, run="bench", task=task_id)


async def _settle(pool: WarmPool, image: str) -> None:
    """Wait for the pool's background work (closing or resetting, refilling) to end."""
    await asyncio.gather(*list(pool._closing))
    while pool._filling[image] or pool._returning[image]:
        await asyncio.sleep(0.01)


async def bench_recycle(task: Task, episodes: int) -> dict[str, float]:
    pools = {mode: WarmPool(_create, AdmissionControl(4, 20.0), warm_size=1, recycle=mode == "recycled")
             for mode in ("fresh", "recycled")}
    cpu = {mode: 0.0 for mode in pools}
    setups: dict[str, list[float]] = {mode: [] for mode in pools}
    acquires: dict[str, list[float]] = {mode: [] for mode in pools}
    try:
        for pool in pools.values():
            pool.prewarm(task.image)
            await _settle(pool, task.image)
            for _ in range(2):  # reach the steady state: the recycled pool holds its two sandboxes
                sb = await pool.acquire(task.image, "warm-up")
                await prepare_repository(sb, task)
                await pool.release(sb)
                await _settle(pool, task.image)
        for _ in range(episodes):
            for mode, pool in pools.items():
                before = machine_cpu_s()
                started = time.perf_counter()
                sb = await pool.acquire(task.image, task.instance_id)
                acquires[mode].append(time.perf_counter() - started)
                await prepare_repository(sb, task)
                setups[mode].append(time.perf_counter() - started)
                await sb.exec("echo '# edited' >> inflection/__init__.py")
                await pool.release(sb)
                await _settle(pool, task.image)
                cpu[mode] += machine_cpu_s() - before
        stats = pools["recycled"].stats()
        fresh_created = pools["fresh"].created
        resets = sorted(pools["recycled"].recycle_seconds)[-episodes:]
    finally:
        for pool in pools.values():
            await pool.close()
    ms = 1000.0
    return {
        "episode_sandbox_cpu_ms": cpu["recycled"] / episodes * ms,
        "episode_sandbox_fresh_cpu_ms": cpu["fresh"] / episodes * ms,
        "recycled_vs_fresh_cpu_ratio": cpu["recycled"] / cpu["fresh"] if cpu["fresh"] else 0.0,
        "episode_setup_p50_ms": statistics.median(setups["recycled"]) * ms,
        "episode_setup_fresh_p50_ms": statistics.median(setups["fresh"]) * ms,
        "recycled_acquire_p50_ms": statistics.median(acquires["recycled"]) * ms,
        "warm_acquire_p50_ms": statistics.median(acquires["fresh"]) * ms,
        "recycle_p50_ms": statistics.median(resets) * ms if resets else 0.0,
        "recycled_acquisitions": stats["recycled_hits"],
        "recycle_failures": stats["recycle_failures"],
        # sandboxes each pool created in all, its warm-up episodes included
        "recycled_pool_creates": stats["created"],
        "fresh_pool_creates": fresh_created,
        "recycle_episodes": episodes,
    }
