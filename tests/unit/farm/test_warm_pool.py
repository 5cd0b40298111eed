"""Warm pools on in-memory sandboxes: warm hand-outs, dead ones dropped, single use, clean close."""

from __future__ import annotations

import asyncio

import pytest
from fakes import FakeFactory, FakeSandbox

from envfarm.errors import SandboxError
from envfarm.farm.admission import AdmissionControl
from envfarm.farm.pool import WarmPool
from envfarm.sandbox.base import ExecResult, Sandbox


def test_the_fake_states_the_sandbox_contract():
    assert isinstance(FakeSandbox(), Sandbox)


def pool_with(factory: FakeFactory, warm: int = 2) -> WarmPool:
    return WarmPool(factory, AdmissionControl(max_starting=4, rate=1000.0), warm_size=warm, liveness_interval=30.0)


def test_warm_sandboxes_are_handed_out_then_refilled_and_never_reused():
    async def main():
        factory = FakeFactory()
        pool = pool_with(factory)
        pool.prewarm("img")
        await asyncio.sleep(0.05)
        first = await pool.acquire("img")
        await asyncio.sleep(0.05)
        await pool.release(first)
        await asyncio.sleep(0.05)
        second = await pool.acquire("img")
        stats = pool.stats()
        await pool.close()
        return factory, first, second, stats

    factory, first, second, stats = asyncio.run(main())
    assert first is not second and first.closed  # single use: a released sandbox is closed, not pooled
    assert stats["warm_hits"] == 2 and stats["cold_creates"] == 0 and stats["busy"] == 1
    assert all(sb.closed for sb in factory.made if sb is not second)


def test_a_dead_warm_sandbox_is_dropped_and_a_stale_one_is_probed():
    async def main():
        factory = FakeFactory()
        pool = pool_with(factory, warm=2)
        pool.prewarm("img")
        await asyncio.sleep(0.05)
        dead, stale = factory.made
        dead.alive = False
        stale.age(60.0)  # quiet for longer than the liveness interval: a real command decides
        got = await pool.acquire("img")
        stats = pool.stats()
        await pool.close()
        return got, stale, stats

    got, stale, stats = asyncio.run(main())
    assert got is stale and stale.commands == ["true"] and stats["dead_on_acquire"] == 1


def test_create_failures_surface_as_sandbox_errors_and_are_counted():
    async def main():
        factory = FakeFactory()
        factory.fail = 1
        pool = pool_with(factory, warm=0)
        with pytest.raises(SandboxError, match="refused"):
            await pool.acquire("img")
        ok = await pool.acquire("img")
        stats = pool.stats()
        await pool.close()
        return ok, stats

    ok, stats = asyncio.run(main())
    assert isinstance(ok, FakeSandbox) and stats["create_failures"] == 1 and stats["created"] == 1


def test_a_probe_that_fails_counts_as_dead():
    async def main():
        factory = FakeFactory()
        pool = pool_with(factory, warm=1)
        pool.prewarm("img")
        await asyncio.sleep(0.05)
        (only,) = factory.made
        only.age(60.0)
        only.handler = lambda cmd: ExecResult(output="", exit_code=1)
        got = await pool.acquire("img")
        await pool.close()
        return got, only

    got, only = asyncio.run(main())
    assert got is not only and only.closed
