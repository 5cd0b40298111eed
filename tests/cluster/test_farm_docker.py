"""The farm on real Docker: a multi-node Ray cluster losing a node, and a local 8-env run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from envfarm.farm.scheduler import EnvFarm, FarmConfig
from envfarm.sandbox.docker_backend import LABEL_RUN, list_containers
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def three_node_cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def test_hosts_spread_over_nodes_and_survive_a_node_loss(three_node_cluster, fixture_tasks):
    cluster, workers = three_node_cluster
    cfg = FarmConfig(envs=6, backend="docker", policy="scripted", run=f"test-nodes-{int(time.time())}",
                     warm_fraction=0.0, max_retries=3, env_config={"max_turns": 20})

    async def main():
        farm = EnvFarm(cfg, address=cluster.address)
        await farm.start()
        try:
            nodes_before = {s["node"] for s in await farm.host_stats()}
            records, removed = [], False
            async for rec in farm.run(fixture_tasks, group_size=2, episodes=16):
                records.append(rec)
                if len(records) == 3 and not removed:
                    cluster.remove_node(workers[0])  # a node dies mid-run, with its host and episodes
                    removed = True
            return nodes_before, records, farm.counters
        finally:
            await farm.shutdown()

    nodes_before, records, counters = asyncio.run(main())
    assert len(nodes_before) == 3  # one host per node
    ids = [r.episode_id for r in records]
    assert len(ids) == 16 and len(set(ids)) == 16  # every episode exactly once
    assert counters.duplicates_dropped == 0
    assert counters.retried >= 1  # the removed node's in-flight episodes ran again elsewhere
    assert counters.failed == 0, [r.error for r in records if r.error_kind]
    assert all(r.resolved for r in records), [(r.episode_id, r.error) for r in records
                                                 if not r.resolved]
    assert not list_containers(**{LABEL_RUN: cfg.run})


def test_local_run_of_8_envs_over_40_episodes(tmp_path: Path, fixture_tasks):
    """With --recycle (every other farm test closes used sandboxes): agents' and graders'
    sandboxes come back reset, every episode resolves, nothing is left."""
    tasks_file = tmp_path / "tasks.jsonl"
    rows = load_jsonl(BUILTIN_DIR / "fixtures.jsonl")
    tasks_file.write_text("".join(json.dumps(t.model_dump()) + "\n" for t in rows))
    run = f"test-local-{int(time.time())}"
    proc = subprocess.run(
        [sys.executable, "-m", "envfarm.launch", "--envs", "8", "--episodes", "40", "--group-size", "4",
         "--tasks", str(tasks_file), "--out", str(tmp_path / "rollouts"), "--run", run, "--no-live", "--recycle"],
        capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "rollouts" / run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["episodes_finished"] == 40 and summary["failed_infrastructure"] == 0
    assert summary["sandboxes_recycled"] > 0 and summary["sandboxes_recycle_failures"] == 0, summary
    assert summary["sandboxes_created"] < 80  # 40 episodes and their 40 gradings, fewer fresh sandboxes
    lines = [json.loads(line) for f in sorted(run_dir.glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert len(lines) == 40 and len({r["episode_id"] for r in lines}) == 40
    assert sum(r["resolved"] for r in lines) == 40
    assert (run_dir / "manifest.json").exists()
    assert not list_containers(**{LABEL_RUN: run})


def test_warm_pool_never_hands_out_a_killed_container(inflection_image):
    from envfarm.farm.admission import AdmissionControl
    from envfarm.farm.pool import WarmPool
    from envfarm.sandbox.docker_backend import DockerSandbox, docker_client

    async def create(spec, task_id):
        return await DockerSandbox.create(spec, run="test-pool")

    async def main():
        pool = WarmPool(create, AdmissionControl(4, 20), warm_size=3)
        try:
            pool.prewarm(inflection_image)
            while pool.stats()["warm"] < 3:
                await asyncio.sleep(0.05)
            pool.warm_size = 0
            victim = pool._ready[inflection_image][0]
            docker_client().api.kill(victim.container.id)
            await asyncio.sleep(1.0)  # the engine closes the shell's stream
            got = [await pool.acquire(inflection_image) for _ in range(3)]
            outputs = [(await sb.exec("echo ok")).output for sb in got]
            stats = pool.stats()
            for sb in got:
                await pool.release(sb)
            return victim, got, outputs, stats
        finally:
            await pool.close()

    victim, got, outputs, stats = asyncio.run(main())
    assert victim not in got and outputs == ["ok\n"] * 3
    assert stats["dead_on_acquire"] == 1 and stats["cold_creates"] == 1
