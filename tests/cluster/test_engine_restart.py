"""The Docker engine restarted in the middle of a farm run: nothing lost, nothing counted twice, nothing left."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from envfarm.farm.scheduler import EnvFarm, FarmConfig
from envfarm.sandbox.docker_backend import LABEL_RUN, list_containers

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def restart_engine() -> float:
    """Stop dockerd (its containers stop with it) and start it again as scripts/docker-up.sh does."""
    started = time.monotonic()
    pids = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout.split()
    assert pids, "this test restarts the engine that scripts/docker-up.sh started; none is running"
    subprocess.run(["kill", "-TERM", *pids], check=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and subprocess.run(["pgrep", "-x", "dockerd"]).returncode == 0:
        time.sleep(0.2)
    subprocess.run(["bash", str(ROOT / "scripts" / "docker-up.sh")], check=True, capture_output=True)
    return time.monotonic() - started


def test_engine_restart_mid_run(fixture_tasks):
    cfg = FarmConfig(envs=4, backend="docker", policy="scripted", run=f"test-engine-{int(time.time())}",
                     warm_fraction=0.5, max_retries=4, env_config={"max_turns": 20})

    async def main():
        farm = EnvFarm(cfg)
        await farm.start()
        records, downtime = [], None
        try:
            async for rec in farm.run(fixture_tasks, group_size=2, episodes=10):
                records.append(rec)
                if len(records) == 2 and downtime is None:
                    downtime = await asyncio.to_thread(restart_engine)
            return records, farm.counters, downtime
        finally:
            await farm.shutdown()

    records, counters, downtime = asyncio.run(main())
    assert downtime is not None
    ids = [r.episode_id for r in records]
    assert len(ids) == 10 and len(set(ids)) == 10
    assert counters.retried >= 1  # the episodes running when the engine went down ran again
    assert counters.failed == 0, [r.error for r in records if r.error_kind]
    assert all(r.resolved for r in records), [(r.error_kind, r.error, r.end_reason) for r in records if not r.resolved]
    assert not list_containers(**{LABEL_RUN: cfg.run})
