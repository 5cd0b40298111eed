"""The pieces of the simulated creation benchmark: the engine model and its bound, the virtual
clock, and the in-process multi-node farm (real EnvFarm loop, hosts, pools, admission; no Ray)."""

from __future__ import annotations

import asyncio
import time

import pytest

from envfarm.farm.host import EnvHostImpl
from envfarm.farm.scheduler import FarmConfig
from envfarm.farm.sim_cluster import SimClusterFarm
from envfarm.sandbox.backends import make_backend
from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.sim_clock import run_virtual
from envfarm.sandbox.sim_engine import EngineCurve
from envfarm.tasks.loading import load_builtin

CURVE = EngineCurve(((1, 1.0), (2, 1.0), (4, 1.6), (8, 6.0)))  # best throughput at 4: 2.5 creates/s


def test_curve_interpolates_extrapolates_and_finds_its_best_level():
    assert CURVE.latency(3) == pytest.approx(1.3)
    assert CURVE.latency(12) == pytest.approx(10.4)  # past the last point, along the last segment
    assert CURVE.best_concurrency() == 4
    with pytest.raises(ValueError):
        EngineCurve(((2, 1.0),))


def test_bound_is_the_fastest_wave_schedule_of_the_curve_alone():
    # 8 creates on one node: 5 done soonest as 3 then 2 (1.3 + 1.0 s), all 8 as two waves of 4 (1.6 + 1.6 s)
    assert CURVE.schedule_bound([8]) == {"p50_s": pytest.approx(2.3), "p99_s": pytest.approx(3.2)}
    assert CURVE.schedule_bound([1, 1, 0]) == {"p50_s": 1.0, "p99_s": 1.0}


def test_stored_curve_was_measured_at_the_protocol_levels():
    assert [c for c, _ in EngineCurve.load().points] == [1, 2, 4, 8, 16]


def test_virtual_clock_moves_only_while_everything_waits():
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        t0, r0 = loop.time(), time.perf_counter()
        await asyncio.gather(*(asyncio.sleep(s) for s in (5.0, 60.0, 3600.0)))
        await asyncio.to_thread(time.sleep, 0.05)  # a thread: real time, no virtual time
        return loop.time() - t0, time.perf_counter() - r0

    virtual, real = run_virtual(main())
    assert virtual == pytest.approx(3600.0, abs=0.01) and real < 5.0


def test_modelled_engine_is_shared_by_the_creates_in_flight():
    backend = make_backend({"type": "sim", "profile": {"create_curve": CURVE.points, "spread": 0.0}})

    async def main(delays: list[float]) -> list[float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def one(delay: float) -> float:
            await asyncio.sleep(delay)
            await backend.create(SandboxSpec(image="x"))
            return loop.time() - t0

        return await asyncio.gather(*(one(d) for d in delays))

    assert run_virtual(main([0, 0, 0, 0])) == pytest.approx([1.6] * 4)  # 4 at once: latency(4) each
    # one alone for 0.5 s (half done), then two share the engine at latency(2) = 1 s each: 1.0 and 1.5 s
    assert run_virtual(main([0, 0.5])) == pytest.approx([1.0, 1.5])
    assert backend.engine.in_flight == 0 and backend.engine.peak == 4
    assert backend.admission() == (4, backend.create_rate)  # at most the curve's best level in flight


def test_farm_of_simulated_nodes_creates_every_sandbox_within_reach_of_the_bound():
    ready: list[float] = []

    async def main() -> int:
        loop = asyncio.get_running_loop()

        class Host(EnvHostImpl):
            def _count_running(self, delta: int) -> None:
                super()._count_running(delta)
                if delta > 0:
                    ready.append(loop.time() - t0)

        cfg = FarmConfig(envs=4 * 8, backend="sim", policy="sim", warm_fraction=0.0, create_rate=1000.0,
                         sim_profile={"create_curve": CURVE.points, "spread": 0.0, "grade_s": 0.1},
                         policy_kwargs={"think_s": 1.0, "turns": 1, "spread": 0.0})
        farm = SimClusterFarm(cfg, nodes=4, host_class=Host)
        await farm.start()
        t0 = loop.time()
        records = [r async for r in farm.run(load_builtin(), episodes=32)]
        peak = max(h.impl.backend.engine.peak for h in farm.hosts)
        await farm.shutdown()
        assert all(r.error_kind is None for r in records) and len(records) == 32
        return peak

    peak = run_virtual(main())
    assert peak == 4  # admission kept every engine at its best level
    ready.sort()
    assert len(ready) == 32
    bound = CURVE.schedule_bound([8] * 4)
    assert bound["p99_s"] <= ready[-1] < bound["p99_s"] + 0.5
