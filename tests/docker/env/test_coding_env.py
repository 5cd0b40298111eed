"""CodingEnv against real sandboxes: solving tasks through the tools, garbage, limits, faults, gymnasium."""

from __future__ import annotations

import asyncio
import json
import math
import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

from envfarm.env import ENV_ID, CodingEnv
from envfarm.env.patch import extract_patch
from envfarm.policy.base import Completion
from envfarm.policy.scripted import ScriptedPolicy
from envfarm.rollout import run_episode
from envfarm.sandbox.base import SandboxError, SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox, docker_client
from envfarm.tasks.grading import apply_patch
from envfarm.tasks.setup import prepare_repository

pytestmark = pytest.mark.docker


class GarbagePolicy:
    """Replies with everything but a valid tool call: prose, broken JSON, unknown tools, bad arguments."""

    REPLIES = ["I think the bug is somewhere in the code.", "<tool_call>{'name': bash}</tool_call>",
               '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',
               '<tool_call>{"name": "bash", "arguments": {"cmd": "ls"}}</tool_call>', "\x00\x01{{{", ""]

    async def act(self, messages, tools):
        turn = sum(m["role"] == "assistant" for m in messages)
        return Completion(text=self.REPLIES[turn % len(self.REPLIES)])


class CommandPolicy:
    """Runs one fixed bash command every turn."""

    def __init__(self, command: str) -> None:
        self.command = command

    async def act(self, messages, tools):
        call = {"name": "bash", "arguments": {"command": self.command}}
        return Completion(text=f"<tool_call>{json.dumps(call)}</tool_call>")


def test_scripted_policy_resolves_every_fixture_task(fixture_tasks):
    policy = ScriptedPolicy()

    async def main():
        sem = asyncio.Semaphore(2)

        async def one(task):
            async with sem:
                return await run_episode(CodingEnv(), policy, task)

        return await asyncio.gather(*(one(t) for t in fixture_tasks))

    trajectories = asyncio.run(main())
    for traj in trajectories:
        assert traj.error_kind is None, (traj.instance_id, traj.error)
        assert traj.reward == 1.0 and traj.resolved and traj.terminated and not traj.truncated, traj.instance_id
        names = [c.name for turn in traj.turns for c in turn.tool_calls]
        assert names[0] == "bash" and "str_replace_editor" in names and names[-1] == "submit"
        assert any('"str_replace"' in c.arguments for turn in traj.turns for c in turn.tool_calls)
        assert traj.grade.status == "RESOLVED_FULL" and traj.patch.startswith("diff --git")
        assert traj.messages[-1]["role"] == "tool" and traj.timings.grading > 0


def test_garbage_policy_gets_format_help_and_reward_zero(fixture_tasks):
    traj = asyncio.run(run_episode(CodingEnv(max_turns=6), GarbagePolicy(), fixture_tasks[0]))
    assert traj.reward == 0.0 and traj.error_kind is None and not traj.resolved
    assert traj.truncated and not traj.terminated and traj.end_reason == "max_turns"
    assert len(traj.turns) == 6
    assert traj.turns[0].format_error and "<tool_call>" in traj.turns[0].observation
    assert "not valid JSON" in traj.turns[1].observation
    assert "no tool named 'rm_rf'" in traj.turns[2].observation
    assert "needs the argument(s) command" in traj.turns[3].observation
    assert traj.grade.error.startswith("empty patch")


def test_turn_limit_truncates_and_still_grades(fixture_tasks):
    task = fixture_tasks[0]
    fix = "sed -i 's/number % 10 in (11/number % 100 in (11/' inflection/__init__.py"
    traj = asyncio.run(run_episode(CodingEnv(max_turns=2), CommandPolicy(fix), task))
    assert traj.truncated and not traj.terminated and traj.end_reason == "max_turns" and len(traj.turns) == 2
    assert traj.reward == 1.0, traj.grade  # the fix was in place when the limit hit: graded, not discarded


def test_time_limit_truncates(fixture_tasks):
    env = CodingEnv(episode_timeout_s=2.0)
    traj = asyncio.run(run_episode(env, CommandPolicy("sleep 0.8"), fixture_tasks[0]))
    assert traj.truncated and not traj.terminated and traj.end_reason == "time_limit"
    assert 2 <= len(traj.turns) <= 4 and traj.reward == 0.0


def test_command_timeout_kills_the_command_and_says_so(fixture_tasks):
    env = CodingEnv(command_timeout_s=1.0)
    try:
        env.reset(options={"task": fixture_tasks[0]})
        obs, reward, term, trunc, info = env.step(
            '<tool_call>{"name": "bash", "arguments": {"command": "sleep 30"}}</tool_call>')
        assert "timed out" in obs and info["tool_calls"][0]["seconds"] < 10 and not (term or trunc)
        obs, *_ = env.step('<tool_call>{"name": "bash", "arguments": {"command": "echo alive"}}</tool_call>')
        assert obs.strip() == "alive"
    finally:
        env.close()


def test_long_output_is_cut_in_the_middle_with_a_note(fixture_tasks):
    env = CodingEnv(max_observation_chars=1000)
    try:
        env.reset(options={"task": fixture_tasks[0]})
        obs, *_ = env.step('<tool_call>{"name": "bash", "arguments": {"command": "seq 1 20000"}}</tool_call>')
        assert len(obs) <= 1000 and obs.startswith("1\n2\n") and obs.rstrip().endswith("20000")
        assert "characters cut from the middle" in obs
    finally:
        env.close()


def test_dead_sandbox_ends_episode_as_infrastructure_not_zero(fixture_tasks):
    env = CodingEnv()
    try:
        env.reset(options={"task": fixture_tasks[0]})
        docker_client().api.remove_container(env._sandbox.container.id, force=True)
        obs, reward, term, trunc, info = env.step(
            '<tool_call>{"name": "bash", "arguments": {"command": "ls"}}</tool_call>')
        # masked: NaN for gymnasium (a float that shows in any sum), never a silent 0
        assert math.isnan(reward) and info["masked"] and info["error_kind"] == "infrastructure" and trunc and not term
        with pytest.raises(RuntimeError, match="reset"):
            env.step("anything")
    finally:
        env.close()


def test_failing_grader_sandbox_is_masked_not_zero(fixture_tasks):
    """The farm injects the factory: when the grading sandbox cannot start, reward is None."""
    created = []

    async def factory(spec: SandboxSpec, task_id: str):
        if created:
            raise SandboxError("engine refused the grading container")
        created.append(task_id)
        return await DockerSandbox.create(spec, run="tests", task=task_id)

    policy = ScriptedPolicy()
    traj = asyncio.run(run_episode(CodingEnv(sandbox_factory=factory), policy, fixture_tasks[0]))
    assert traj.reward is None and traj.masked and traj.error_kind == "infrastructure"
    assert "engine refused" in traj.grade.error


def test_patch_is_binary_safe_and_regrades_elsewhere(fixture_tasks):
    task = fixture_tasks[0]

    async def main():
        agent = await DockerSandbox.create(SandboxSpec(image=task.image), run="tests")
        fresh = await DockerSandbox.create(SandboxSpec(image=task.image), run="tests")
        try:
            await prepare_repository(agent, task)
            await agent.write_file("/testbed/data.bin", bytes(range(256)) * 4)
            await agent.write_file("/testbed/latin1.txt", b"caf\xe9\n")
            await agent.exec("rm /testbed/MANIFEST.in")
            patch = await extract_patch(agent, task.base_commit)
            await prepare_repository(fresh, task)
            ok, out = await apply_patch(fresh, patch)
            assert ok, out
            assert await fresh.read_file("/testbed/data.bin") == bytes(range(256)) * 4
            assert await fresh.read_file("/testbed/latin1.txt") == b"caf\xe9\n"
            assert (await fresh.exec("test -e /testbed/MANIFEST.in")).exit_code == 1
        finally:
            await agent.close()
            await fresh.close()

    asyncio.run(main())


def test_gymnasium_make_and_env_checker(fixture_tasks):
    env = gymnasium.make(ENV_ID, tasks=fixture_tasks[:2], max_turns=5)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_env(env.unwrapped, skip_render_check=True)
        assert env.reset(seed=123)[0] == env.reset(seed=123)[0]  # seeded resets draw the same task
        obs, info = env.reset(seed=3)
        assert obs in env.observation_space and info["tools"][0]["type"] == "function"
        assert {t["function"]["name"] for t in info["tools"]} == {"bash", "str_replace_editor", "submit"}
        assert info["instance_id"] in {t.instance_id for t in fixture_tasks[:2]}
    finally:
        env.close()


def test_sync_api_works_inside_a_running_event_loop(fixture_tasks):
    async def main():
        env = CodingEnv()
        try:
            env.reset(options={"task": fixture_tasks[0]})
            obs, *_ = env.step('```bash\ncd inflection && pwd\n```')
            obs2, *_ = env.step('```bash\npwd\n```')
            return obs.strip(), obs2.strip()
        finally:
            env.close()

    assert asyncio.run(main()) == ("/testbed/inflection", "/testbed/inflection")
