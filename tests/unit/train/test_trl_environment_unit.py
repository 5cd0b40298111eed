"""The TRL environment's contract without Docker: simulated sandboxes, a stand-in grader.

Checks what TRL relies on (which methods become tools) and the reward rules: a wrong patch 0, a
resolved one 1, an infrastructure fault None (masked), never 0.
"""

from __future__ import annotations

import inspect

import pytest

from envfarm.env.parsing import parse_tool_calls
from envfarm.errors import SandboxError
from envfarm.tasks.grade_result import GradeResult
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
from envfarm.train.trl_environment import EnvfarmEnvironmentFactory, EnvfarmToolEnv, _action


@pytest.fixture
def factory():
    tasks = load_jsonl(BUILTIN_DIR / "fixtures.jsonl")[:2]
    made = EnvfarmEnvironmentFactory(tasks, {"max_turns": 5}, backend="sim", warm=2, run="pytest-trl-unit")
    yield made
    made.close()


def with_grader(factory: EnvfarmEnvironmentFactory, verdict) -> EnvfarmToolEnv:
    async def grader(task, patch, sandbox_factory, timeout=600.0):
        if isinstance(verdict, Exception):
            raise verdict
        return GradeResult(instance_id=task.instance_id, resolved=verdict, fail_to_pass=float(verdict))

    factory.runtime.grader = grader
    return factory()


def test_only_the_tools_are_public():
    # TRL exposes every public function of the class except reset and get_reward as a tool
    public = {name for name, _ in inspect.getmembers(EnvfarmToolEnv, predicate=inspect.isfunction)
              if not name.startswith("_")}
    assert public == {"reset", "get_reward", "bash", "str_replace_editor", "submit"}
    from transformers.utils import get_json_schema

    schema = get_json_schema(EnvfarmToolEnv.str_replace_editor)["function"]
    assert schema["parameters"]["required"] == ["command", "path"]
    assert schema["parameters"]["properties"]["command"]["enum"][0] == "view"


def test_a_tool_call_survives_its_own_closing_tag():
    call = parse_tool_calls(_action("bash", {"command": "echo '</tool_call>' && ls"})).calls
    assert [(c.name, c.arguments) for c in call] == [("bash", {"command": "echo '</tool_call>' && ls"})]


def test_wrong_patch_scores_zero_and_resolved_one(factory):
    row = {"instance_id": factory.tasks[0].instance_id, "prompt": []}
    wrong = with_grader(factory, False)
    assert "<issue>" in wrong.reset(**row)
    assert wrong.bash("ls") == "[no output]"
    assert "graded" in wrong.submit()
    with pytest.raises(RuntimeError, match="episode is over"):
        wrong.bash("ls")  # TRL hands this back to the model as {"error": ...}
    assert wrong.get_reward() == 0.0
    right = with_grader(factory, True)
    right.reset(**row)
    right.bash("true")  # never submitted: ended as a truncation by get_reward, graded as it stands
    assert right.get_reward() == 1.0


def test_infrastructure_faults_are_masked_never_zero(factory):
    row = {"instance_id": factory.tasks[1].instance_id}
    grading_down = with_grader(factory, SandboxError("engine gone"))
    grading_down.reset(**row)
    grading_down.submit()
    assert grading_down.get_reward() is None

    async def no_sandbox(spec, task_id):
        raise SandboxError("no engine")

    factory.runtime.sandbox_factory = no_sandbox
    broken = with_grader(factory, False)
    assert "could not be started" in broken.reset(**row)
    with pytest.raises(RuntimeError, match="could not be started"):
        broken.bash("ls")
    assert broken.get_reward() is None


def test_unknown_task_is_an_error(factory):
    env = factory()
    with pytest.raises(KeyError, match="not one of this factory's tasks"):
        env.reset(instance_id="nope")
