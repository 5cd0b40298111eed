"""Backends chosen once from a typed config: the registry, the sim backend end to end (no Docker)."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from envfarm.farm.admission import AdmissionControl
from envfarm.farm.host import EnvHostImpl, HostConfig
from envfarm.farm.host_episode import EpisodeSlot
from envfarm.farm.pool import WarmPool
from envfarm.farm.pooled import pool_factory
from envfarm.farm.scheduler import FarmConfig
from envfarm.sandbox.backends import (
    DockerBackendConfig,
    SimBackendConfig,
    backend_config,
    backend_names,
    make_backend,
)
from envfarm.sandbox.base import Sandbox, SandboxBackend, SandboxSpec
from envfarm.sandbox.sim_backend import SimBackend, SimProfile
from envfarm.tasks.grading import grade, grader_for
from envfarm.tasks.loading import load_builtin

FAST = {"create_s": 0.0, "close_s": 0.0, "grade_s": 0.0, "exec_s": 0.0}


def test_a_name_a_dict_or_a_config_gives_the_same_typed_config():
    assert backend_names() == ["docker", "local", "sim"]
    assert backend_config("docker") == DockerBackendConfig() == backend_config({"type": "docker"})
    sim = backend_config("sim", sim_profile={"create_s": 0.5, "resolve_rate": 1.0})
    assert sim == SimBackendConfig(profile=SimProfile(create_s=0.5, resolve_rate=1.0))
    assert backend_config({"type": "sim", "profile": {"create_s": 0.5, "resolve_rate": 1.0}}) == sim
    assert backend_config(sim) is sim
    assert pickle.loads(pickle.dumps(sim)) == sim  # configs travel to host actors through Ray


def test_unknown_backends_and_profile_fields_are_refused():
    with pytest.raises(ValueError, match="unknown backend 'podman'"):
        backend_config("podman")
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend({"type": "nope"})
    with pytest.raises(TypeError):
        backend_config("sim", sim_profile={"no_such_field": 1})


def test_each_backend_carries_its_admission_defaults():
    docker, sim = make_backend("docker"), make_backend("sim")  # making a backend touches no engine
    assert isinstance(docker, SandboxBackend) and isinstance(sim, SimBackend)
    assert (docker.simulated, docker.leaves_orphans) == (False, True)
    assert (sim.simulated, sim.leaves_orphans) == (True, False)
    assert docker.admission() == (8, 20.0) and sim.admission() == (2000, 5000.0)
    assert docker.admission(3, None) == (3, 20.0)
    assert FarmConfig(backend="docker").admission() == (8, 20.0)
    assert FarmConfig(backend="sim").admission() == (2000, 5000.0)
    assert FarmConfig(backend="sim", max_starting=5, create_rate=1.0).admission() == (5, 1.0)
    assert FarmConfig(backend=SimBackendConfig()).admission() == (2000, 5000.0)


def test_farm_config_converts_the_cli_string_once():
    cfg = FarmConfig(backend="sim", sim_profile={"create_s": 0.01})
    assert cfg.backend_config == SimBackendConfig(profile=SimProfile(create_s=0.01))
    assert cfg.backend_config is cfg.backend_config


def test_graders_follow_the_backend():
    assert grader_for(make_backend("docker")) is grade
    assert grader_for(make_backend("sim")) is not grade


def test_sim_backend_makes_sandboxes_that_state_the_pool_contract():
    backend = make_backend(SimBackendConfig(profile=SimProfile(**FAST)))

    async def main():
        sandbox = await backend.factory(owner="o", run="r")(SandboxSpec(image="img"), "task")
        assert isinstance(sandbox, Sandbox)
        assert sandbox.simulated and sandbox.is_alive() and sandbox.last_ok > 0
        await sandbox.close()
        assert not sandbox.is_alive()

        pool = WarmPool(backend.factory(), AdmissionControl(*backend.admission()))
        pooled = await pool_factory(pool)(SandboxSpec(image="img"), "task")
        assert isinstance(pooled, Sandbox)  # a pooled sandbox states the same contract
        assert pooled.simulated and pooled.is_alive() and pooled.last_ok > 0
        await pooled.close()
        await pool.close()

    asyncio.run(main())
    assert backend.reap(owner="o") == 0
    assert backend.ensure_image("anything:1") == "present"


def test_one_episode_that_raises_is_its_own_failure_never_its_siblings(monkeypatch):
    """A group's episodes run side by side on a host: an exception out of one of them (a bug, or
    an agent's input that broke something) is that slot's infrastructure record; the others keep
    their own records."""
    import envfarm.farm.host_episode as host_episode
    from envfarm.errors import ErrorKind

    task = load_builtin()[0]
    host = EnvHostImpl(HostConfig(host_id="t/host-0", run="t", slots=3, backend="sim", sim_profile={
        **FAST, "resolve_rate": 1.0}, policy="sim", policy_kwargs={"think_s": 0.0, "turns": 2}))
    real = host_episode.run_farm_episode

    async def flaky(task, *, slot, **kwargs):
        if slot.member == 1:
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return await real(task, slot=slot, **kwargs)

    monkeypatch.setattr(host_episode, "run_farm_episode", flaky)
    slots = [EpisodeSlot(episode_id=f"e{i}", group_id="g0", member=i) for i in range(3)]

    async def main():
        records = await host.run_group(task.model_dump(), slots)
        await host.shutdown()
        return records

    records = asyncio.run(main())
    assert [r.episode_id for r in records] == ["e0", "e1", "e2"]
    assert records[1].error_kind == ErrorKind.INFRASTRUCTURE and "UnicodeEncodeError" in records[1].error
    assert [r.error_kind for r in (records[0], records[2])] == [None, None] and records[0].resolved


def test_a_host_on_the_sim_backend_runs_an_episode_without_docker_or_ray():
    task = load_builtin()[0]
    host = EnvHostImpl(HostConfig(host_id="t/host-0", run="t", slots=2, backend="sim", sim_profile={
        **FAST, "resolve_rate": 1.0}, policy="sim", policy_kwargs={"think_s": 0.0, "turns": 2}))
    assert isinstance(host.backend, SimBackend) and host.backend.profile.resolve_rate == 1.0

    async def main():
        record = await host.run_episode(task.model_dump(), EpisodeSlot(episode_id="e0", group_id="g0"))
        assert await host.ensure_image(task.image) == {"image": task.image, "how": "present", "seconds": 0.0}
        return record, await host.shutdown()

    record, left = asyncio.run(main())
    assert record.error_kind is None, record.error
    assert record.resolved is True and left == 0
