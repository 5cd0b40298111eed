"""A farm's host actor killed for good leaves no sandbox behind, with nobody running gc."""

from __future__ import annotations

import asyncio
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
            owners = [s["host_id"] for s in await farm.host_stats()]
            deadline = time.monotonic() + 60
            while any(len(list_containers(**{LABEL_OWNER: o})) < 2 for o in owners):
                assert time.monotonic() < deadline, "the warm pools did not fill"
                await asyncio.sleep(0.2)
            ray.kill(farm.hosts[0], no_restart=True)
            killed_at = time.monotonic()
            while list_containers(**{LABEL_OWNER: owners[0]}):
                assert time.monotonic() - killed_at < 20, "the dead host's sandboxes are still there"
                await asyncio.sleep(0.2)
            took = time.monotonic() - killed_at
            survivors = list_containers(**{LABEL_OWNER: owners[1]})  # the live host's are untouched
            return took, survivors

    took, survivors = asyncio.run(main())
    assert len(survivors) >= 2, survivors
    assert took < 15, took
