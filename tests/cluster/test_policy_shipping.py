"""A plug-in policy that only the driver can import reaches the hosts on every node through Ray's
runtime_env (py_modules), not through a shared path: real Ray, two nodes (ray.cluster_utils.Cluster),
the sim backend (no Docker)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid

import pytest
import ray
from ray.cluster_utils import Cluster

from envfarm.farm.scheduler import EnvFarm, FarmConfig
from envfarm.policy.shipping import code_to_ship
from envfarm.tasks.loading import load_builtin

pytestmark = pytest.mark.slow  # a two-node Ray cluster: 30 to 60 s on a 2-core machine

FAST = {"create_s": 0.02, "close_s": 0.005, "grade_s": 0.05, "exec_s": 0.0002}
PLUGIN = '''
import json
from envfarm.policy import Completion

class SubmitAtOnce:
    """Submits on its first turn and says which module copy it ran from."""
    async def act(self, messages, tools):
        return Completion(text="<tool_call>" + json.dumps({"name": "submit", "arguments": {}}) + "</tool_call>",
                          extra={"from": __file__})
'''


@pytest.fixture(scope="module")
def two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.fixture
def driver_only_package(tmp_path, monkeypatch):
    """A package in a temp folder on the driver's sys.path only (not in PYTHONPATH, which workers inherit)."""
    name = f"userpol_{uuid.uuid4().hex[:8]}"
    pkg = tmp_path / "elsewhere" / name
    pkg.mkdir(parents=True)
    # Ray names an uploaded package by a hash of its files' contents: distinct contents, distinct uploads
    (pkg / "__init__.py").write_text(f"NAME = {name!r}\n")
    (pkg / "agent.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(pkg.parent))
    yield name
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        sys.modules.pop(mod)


def _run_farm(spec: str, address: str | None) -> list:
    cfg = FarmConfig(envs=4, backend="sim", policy=spec, sim_profile=FAST, max_retries=0,
                     warm_fraction=0.0, run=f"test-ship-{uuid.uuid4().hex[:6]}")

    async def main():
        async with EnvFarm(cfg, address=address) as farm:
            return [r async for r in farm.run(load_builtin(), episodes=8)]

    records = asyncio.run(main())
    assert len(records) == 8 and all(r.error_kind is None for r in records), [(r.error_kind, r.error) for r in records]
    assert len({r.farm.node for r in records}) == 2  # hosts on both nodes built and ran the shipped policy
    assert all(len(r.turns) == 1 for r in records)
    return records


@ray.remote(num_cpus=0)
def _importable(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


def test_farm_that_connects_ships_the_plugin_with_its_job(two_nodes, driver_only_package):
    """The CLI's way (`launch --address`): the farm's ray.init carries the code as a job runtime_env."""
    spec = f"{driver_only_package}.agent:SubmitAtOnce"
    assert code_to_ship(spec) and code_to_ship(spec)[0].endswith(driver_only_package)
    assert not ray.is_initialized()
    _run_farm(spec, two_nodes.address)
    assert not ray.is_initialized()  # the farm shut down the connection it made


def test_farm_in_a_ray_the_caller_started_uploads_the_plugin_for_its_hosts(two_nodes, driver_only_package):
    ray.init(address=two_nodes.address, logging_level="ERROR", log_to_driver=False)
    try:
        # without shipping, a worker cannot import it: the farm's run would pass by luck otherwise
        assert ray.get(_importable.remote(f"{driver_only_package}.agent")) is False
        _run_farm(f"{driver_only_package}.agent:SubmitAtOnce", None)
    finally:
        ray.shutdown()


def test_a_plugin_whose_dependency_only_the_driver_has_is_refused_at_the_start(two_nodes, tmp_path, monkeypatch):
    """The plug-in's own package is shipped, a package it imports is not (installed beside the
    driver only): every host fails to build it, and the farm says so before any episode instead of
    masking them all."""
    from envfarm.policy.loader import PolicyLoadError

    tag = uuid.uuid4().hex[:8]
    dep, name = f"driverdep_{tag}", f"userpol_{tag}"
    (tmp_path / "dep" / dep).mkdir(parents=True)
    (tmp_path / "dep" / dep / "__init__.py").write_text("READY = True\n")
    (tmp_path / "pol" / name).mkdir(parents=True)
    (tmp_path / "pol" / name / "__init__.py").write_text("")
    (tmp_path / "pol" / name / "agent.py").write_text(f"import {dep}\n" + textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path / "dep"))
    monkeypatch.syspath_prepend(str(tmp_path / "pol"))
    cfg = FarmConfig(envs=4, backend="sim", policy=f"{name}.agent:SubmitAtOnce", sim_profile=FAST,
                     max_retries=0, run=f"test-ship-{tag}")
    played = []

    async def main():
        async with EnvFarm(cfg, address=two_nodes.address) as farm:
            played.extend([r async for r in farm.run(load_builtin(), episodes=4)])

    try:
        with pytest.raises(PolicyLoadError, match=rf"cannot be built on \d+ of \d+ host.*No module named '{dep}'"):
            asyncio.run(main())
    finally:
        for mod in [m for m in sys.modules if m.startswith((name, dep))]:
            sys.modules.pop(mod)
    assert played == []
    assert not ray.is_initialized()  # the farm shut its hosts and its connection down
