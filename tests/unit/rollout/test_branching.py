"""Branched groups on simulated sandboxes: one shared prefix, distinct continuations, one loss share."""

from __future__ import annotations

import asyncio
import random

import pytest

from envfarm.env import CodingEnv
from envfarm.policy.base import Completion
from envfarm.rollout.branching import branch_turn, run_branched_group
from envfarm.rollout.tokens import build_row, check_row
from envfarm.sandbox.base import ForkUnsupportedError
from envfarm.sandbox.sim_backend import SimProfile, SimSandbox
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
from envfarm.tasks.sim_grading import make_sim_grader

INSTANT = SimProfile(time_scale=0.0)


async def sim_factory(spec, task_id):
    return await SimSandbox.create(spec, INSTANT)


def _ids(message: dict) -> list[int]:
    """A stand-in tokenizer: two ids per message, from its role and its text."""
    return [{"system": 1, "user": 2, "assistant": 3, "tool": 4}[message["role"]],
            100 + sum(map(ord, str(message.get("content") or ""))) % 50_000]


class SamplingPolicy:
    """Runs a random command each turn (its own samples), with token ids that extend its context."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    async def act(self, messages, tools) -> Completion:
        command = f"echo {self.rng.randrange(10**9)}"
        text = f'<tool_call>{{"name": "bash", "arguments": {{"command": "{command}"}}}}</tool_call>'
        await asyncio.sleep(0)
        prompt = [i for m in messages for i in _ids(m)]
        return Completion(text=text, prompt_ids=prompt, completion_ids=_ids({"role": "assistant", "content": text}),
                          logprobs=[-0.5, -0.5])


def play(branches: int, branch_at: float, max_turns: int = 5, factory=sim_factory):
    task = load_jsonl(BUILTIN_DIR / "fixtures.jsonl")[0]

    def make_env() -> CodingEnv:
        return CodingEnv(tasks=[task], sandbox_factory=factory, grader=make_sim_grader(INSTANT), max_turns=max_turns)

    members = [{"episode_id": f"g0/e{i}", "group_id": "g0", "member": i} for i in range(branches)]
    return asyncio.run(run_branched_group(make_env, SamplingPolicy(1), task, branches=branches,
                                          branch_at=branch_at, members=members))


def test_branches_share_the_prefix_and_continue_on_their_own():
    records = play(4, 2)
    assert [r.episode_id for r in records] == ["g0/e0", "g0/e1", "g0/e2", "g0/e3"]
    assert {r.branch_of for r in records} == {"g0/e0"} and [r.branch for r in records] == [0, 1, 2, 3]
    assert all(r.prefix_turns == 2 and r.num_turns == 5 for r in records)
    prefix = [t.model_dump() for t in records[0].turns[:2]]
    assert all([t.model_dump() for t in r.turns[:2]] == prefix for r in records)
    continuations = {tuple(t.completion for t in r.turns[2:]) for r in records}
    assert len(continuations) == 4  # each branch drew its own samples
    assert all(r.reward is not None and r.error_kind is None for r in records)


def test_the_shared_prefix_counts_once_in_the_loss():
    records = play(3, 0.5, max_turns=6)  # half of 6 turns
    rows = [build_row(r) for r in records]
    for record, row in zip(records, rows, strict=True):
        check_row(record, row)
        assert row.prompt_ids == rows[0].prompt_ids
    prefix_tokens = sum(len(t.completion_ids) for t in records[0].turns[:3])
    own = [sum(len(t.completion_ids) for t in r.turns[3:]) for r in records]
    assert sum(rows[0].env_mask) == prefix_tokens + own[0]
    assert [sum(row.env_mask) for row in rows[1:]] == own[1:]  # the prefix is trained on in branch 0 only
    # the ids themselves are the full context in every branch: only the mask differs
    shared = 2 * 3  # turns 0-2: generation, then tool output and generation; then turn 3's tool output
    assert all([s.ids for s in row.segments[:shared]] == [s.ids for s in rows[0].segments[:shared]] for row in rows)


def test_an_episode_that_ends_before_the_branch_point_leaves_independent_members():
    class Submitter(SamplingPolicy):
        async def act(self, messages, tools) -> Completion:
            return Completion(text='<tool_call>{"name": "submit", "arguments": {}}</tool_call>')

    task = load_jsonl(BUILTIN_DIR / "fixtures.jsonl")[0]
    records = asyncio.run(run_branched_group(
        lambda: CodingEnv(tasks=[task], sandbox_factory=sim_factory, grader=make_sim_grader(INSTANT)),
        Submitter(0), task, branches=3, branch_at=2))
    assert len(records) == 3 and all(r.num_turns == 1 and not r.branch_of and r.prefix_turns == 0 for r in records)


@pytest.mark.parametrize("error", [ForkUnsupportedError("the test backend cannot fork"),
                                   OSError("500 Server Error: file name too long"),  # an engine error
                                   RuntimeError("anything else")])
def test_a_sandbox_that_cannot_fork_gives_independent_members(error):
    """Whatever stops the fork (the agent can cause some: paths the engine refuses), the group
    plays independent episodes: never an infrastructure fault that masks the group."""
    class NoFork(SimSandbox):
        async def fork(self, n, factory=None):
            raise error

    async def factory(spec, task_id):
        return NoFork(spec, INSTANT, random.Random(0))

    records = play(3, 1, max_turns=3, factory=factory)
    assert len(records) == 3 and all(not r.branch_of and r.num_turns == 3 for r in records)
    assert all(r.turns[0].completion != records[0].turns[0].completion for r in records[1:])


@pytest.mark.parametrize(("branch_at", "max_turns", "turn"), [(2, 10, 2), (0.5, 10, 5), (0.01, 10, 1), (30, 10, 9),
                                                               (1, 1, 1)])
def test_branch_turn(branch_at, max_turns, turn):
    assert branch_turn(branch_at, max_turns) == turn


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_bad_branch_points_are_refused(bad):
    with pytest.raises(ValueError, match="branch_at"):
        branch_turn(bad, 10)


def test_a_training_config_refuses_a_bad_branch_point_at_once():
    from envfarm.train.config import TrainConfig

    with pytest.raises(ValueError, match="branch_at"):
        TrainConfig(branch_at=0)
    assert TrainConfig(branch_at=0.5).branch_at == 0.5
