"""Only a declared oracle sees the episode's task (gold patch included), each episode its own."""

from __future__ import annotations

import asyncio

import pytest

from envfarm.env import CodingEnv
from envfarm.policy.base import Completion, PolicyError
from envfarm.policy.oracle import episode_task
from envfarm.rollout.episode import run_episode
from envfarm.sandbox.sim_backend import SimProfile, SimSandbox
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
from envfarm.tasks.sim_grading import make_sim_grader

INSTANT = SimProfile(time_scale=0.0)
SUBMIT = '<tool_call>{"name": "submit", "arguments": {}}</tool_call>'


async def sim_factory(spec, task_id):
    return await SimSandbox.create(spec, INSTANT)


class Peeker:
    """Tries to read the task; records what it got."""

    oracle = False

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def act(self, messages, tools) -> Completion:
        try:
            self.seen.append(episode_task().instance_id)
        except PolicyError:
            self.seen.append("refused")
        await asyncio.sleep(0)  # let the other episodes interleave
        return Completion(text=SUBMIT)


class OraclePeeker(Peeker):
    oracle = True


def run_all(policy) -> list[str]:
    tasks = load_jsonl(BUILTIN_DIR / "fixtures.jsonl")

    async def main():
        envs = [CodingEnv(tasks=tasks, sandbox_factory=sim_factory, grader=make_sim_grader(INSTANT)) for _ in tasks]
        trajs = await asyncio.gather(*(run_episode(env, policy, t) for env, t in zip(envs, tasks, strict=True)))
        return [t.instance_id for t in trajs]

    return asyncio.run(main())


def test_a_policy_that_is_not_an_oracle_never_gets_the_task():
    policy = Peeker()
    run_all(policy)
    assert policy.seen and set(policy.seen) == {"refused"}


def test_concurrent_oracle_episodes_each_see_their_own_task():
    policy = OraclePeeker()
    order = run_all(policy)
    assert sorted(policy.seen) == sorted(order)  # one act per episode, each with its own task


def test_outside_an_episode_there_is_no_task():
    with pytest.raises(PolicyError, match="episode loop"):
        episode_task()
