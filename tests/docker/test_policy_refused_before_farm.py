"""A --policy that does not import or does not fit is refused by the driver before the farm starts:
one line on stderr, exit 2, no host actor, and no container on the engine (before, every episode
failed on the hosts as an infrastructure fault, was retried three times and masked)."""

from __future__ import annotations

import textwrap
import uuid

import pytest

from envfarm import launch
from envfarm.farm.scheduler import EnvFarm
from envfarm.sandbox.docker_backend import LABEL_RUN, list_containers

PLUGIN = """
from envfarm.policy import Completion

class NotAPolicy:
    def step(self, messages):
        return "no act here"

class Raising:
    def __init__(self):
        raise RuntimeError("no GPU on this machine")
    async def act(self, messages, tools):
        return Completion(text="")
"""


@pytest.fixture
def bad_plugins(tmp_path, monkeypatch):
    (tmp_path / "bad_plugins_refusal.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    import sys

    sys.modules.pop("bad_plugins_refusal", None)


@pytest.fixture
def farm_never_starts(monkeypatch) -> list[str]:
    started: list[str] = []

    async def refuse(self) -> None:
        started.append(self.config.run)
        raise AssertionError("the farm must not start with a bad policy")

    monkeypatch.setattr(EnvFarm, "start", refuse)
    return started


@pytest.mark.parametrize("spec,words", [
    ("envfarm_nosuch_module_xyz:Policy", ["cannot import module 'envfarm_nosuch_module_xyz'"]),
    ("bad_plugins_refusal:Missing", ["has no attribute 'Missing'", "NotAPolicy"]),
    ("bad_plugins_refusal:NotAPolicy", ["NotAPolicy has no `act` method"]),
    ("bad_plugins_refusal:Raising", ["Raising() raised RuntimeError: no GPU on this machine"]),
])
def test_bad_policy_is_refused_before_any_sandbox(bad_plugins, farm_never_starts, capsys, tmp_path, spec, words):
    run = f"test-refuse-{uuid.uuid4().hex[:8]}"
    rc = launch.main(["--policy", spec, "--envs", "2", "--backend", "docker", "--run", run,
                      "--out", str(tmp_path / "out"), "--no-live"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("envfarm: error: policy ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err
    assert farm_never_starts == []
    assert list_containers(**{LABEL_RUN: run}) == []
    assert not (tmp_path / "out" / run).exists()  # no run folder either: nothing was started
