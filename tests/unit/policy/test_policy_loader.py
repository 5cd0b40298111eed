"""The plug-in loader: builtin names, module:attr specs, and clear errors for what does not fit."""

from __future__ import annotations

import sys
import textwrap

import pytest

from envfarm.policy import Completion, PolicyLoadError, load_policy
from envfarm.policy.scripted import ScriptedPolicy


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    (tmp_path / "my_policies.py").write_text(textwrap.dedent("""
        from envfarm.policy import Completion

        class Echo:
            def __init__(self, word="hi"):
                self.word = word
            async def act(self, messages, tools):
                return Completion(text=self.word)

        def make_echo(word="made"):
            return Echo(word)

        instance = Echo("instance")

        class SyncAct:
            def act(self, messages, tools):
                return Completion(text="x")

        class NoAct:
            pass

        class WrongArity:
            async def act(self):
                return None
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("my_policies", None)


def test_builtin_name_loads_scripted():
    assert isinstance(load_policy("scripted"), ScriptedPolicy)


@pytest.mark.parametrize("spec,kwargs,word", [
    ("my_policies:Echo", {"word": "w"}, "w"), ("my_policies:make_echo", {}, "made"),
    ("my_policies:instance", {}, "instance")])
def test_class_factory_and_instance_specs(plugin_dir, spec, kwargs, word):
    import asyncio

    policy = load_policy(spec, **kwargs)
    completion = asyncio.run(policy.act([], []))
    assert isinstance(completion, Completion) and completion.text == word


@pytest.mark.parametrize("spec,match", [
    ("no_such_module_xyz:Policy", "cannot import module 'no_such_module_xyz'"),
    ("my_policies:Missing", "has no attribute 'Missing'"),
    ("my_policies", "expected 'package.module:attr'"),
    ("my_policies:SyncAct", "must be `async def`"),
    ("my_policies:NoAct", "has no `act` method"),
    ("my_policies:WrongArity", "cannot be called as act"),
])
def test_errors_say_what_is_wrong(plugin_dir, spec, match):
    with pytest.raises(PolicyLoadError, match=match):
        load_policy(spec)


def test_bad_constructor_arguments_are_reported(plugin_dir):
    with pytest.raises(PolicyLoadError, match="failed"):
        load_policy("my_policies:Echo", nope=1)


def test_check_spec_builds_a_plugin_and_checks_builtin_arguments_without_building(plugin_dir, monkeypatch):
    from envfarm.policy.loader import check_spec

    check_spec("my_policies:Echo", {"word": "w"})
    with pytest.raises(PolicyLoadError, match="has no `act` method"):
        check_spec("my_policies:NoAct")
    with pytest.raises(PolicyLoadError, match=r"--policy-arg \['nope'\] does not fit SimPolicy"):
        check_spec("sim", {"nope": 1})

    def never(*a, **k):
        raise AssertionError("a builtin policy is not built by check_spec (the transformers one loads a model)")

    import envfarm.policy.sim as sim_module

    monkeypatch.setattr(sim_module.SimPolicy, "__init__", never)
    check_spec("sim", {})
