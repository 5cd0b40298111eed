"""A farm's host actor killed for good leaves no sandbox behind, with nobody running gc."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import ray

from envfarm.farm.scheduler import EnvFarm, FarmConfig
from envfarm.sandbox.docker_backend import LABEL_OWNER, list_containers

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def local_ray_short_grace():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"ENVFARM_SANDBOX_GRACE_S": "1"}})
    yield
    ray.shutdown()


def test_host_actor_killed_without_restart_leaves_no_container(local_ray_short_grace, inflection_image):
    cfg = FarmConfig(envs=4, backend="docker", hosts_per_node=2, warm_fraction=1.0,
                     run=f"test-orphans-{int(time.time())}")

    async def main():
        async with EnvFarm(cfg) as farm:
            await farm.prewarm([inflection_image])
            # filled: every warm sandbox started (a container the engine lists may still be between
            # its create and its start, where no lease holds it yet: see test_lifetime's stillborn test)
            deadline = time.monotonic() + 60
            while True:
                stats = await farm.host_stats()
                if all(s.get("warm", 0) >= 2 for s in stats):
                    break
                assert time.monotonic() < deadline, f"the warm pools did not fill: {stats}"
                await asyncio.sleep(0.2)
            owners = [s["host_id"] for s in stats]
            assert all(len(list_containers(**{LABEL_OWNER: o})) == 2 for o in owners)
            ray.kill(farm.hosts[0], no_restart=True)
            # the bound is the sandboxes' own: from the owner's death, not from Ray's kill request
            died_at = await _gone(stats[0]["pid"], within_s=60)
            while left := list_containers(**{LABEL_OWNER: owners[0]}):
                assert time.monotonic() - died_at < 20, (
                    "the dead host's sandboxes are still there: "
                    f"{[(c.short_id, c.status, c.attrs.get('State', {}).get('StartedAt')) for c in left]}")
                await asyncio.sleep(0.2)
            took = time.monotonic() - died_at
            survivors = list_containers(**{LABEL_OWNER: owners[1]})  # the live host's are untouched
            return took, survivors

    took, survivors = asyncio.run(main())
    assert len(survivors) >= 2, survivors
    assert took < 15, took


async def _gone(pid: int, within_s: float) -> float:
    """When process `pid` (on this machine) ended: it is polled until it no longer exists."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return time.monotonic()
        assert time.monotonic() < deadline, f"the killed host's process {pid} is still alive"
        await asyncio.sleep(0.05)
