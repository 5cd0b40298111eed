"""Episodes with a real model in a real sandbox: token segments concatenate exactly, and are stored."""

from __future__ import annotations

import asyncio

import pytest

from envfarm.env import CodingEnv
from envfarm.rollout import TrajectoryStore, read_run, run_episode
from envfarm.rollout.tokens import build_row

pytestmark = pytest.mark.docker


def test_tiny_model_episode_records_exact_token_segments(fixture_tasks, tmp_path):
    from envfarm.policy.tiny import make_tiny_model
    from envfarm.policy.transformers_policy import TransformersPolicy

    model, tokenizer = make_tiny_model(seed=2)
    policy = TransformersPolicy(model, tokenizer, max_new_tokens=8)
    traj = asyncio.run(run_episode(CodingEnv(max_turns=3), policy, fixture_tasks[1], run="t"))
    assert traj.truncated and traj.reward == 0.0 and traj.error_kind is None and len(traj.turns) == 3
    assert all(t.format_error for t in traj.turns)  # noise is answered with format help, no crash
    assert [t.prefix_consistent for t in traj.turns] == [None, True, True]

    # prefix_consistent: every turn's prompt was the previous prompt + completion + tool tokens, exactly,
    # so the concatenated segments are the sequence the model saw.
    row = build_row(traj)
    assert row.prompt_ids == traj.turns[0].context_ids
    assert sum(row.env_mask) == sum(len(t.completion_ids) for t in traj.turns)
    assert len(row.logprobs) == len(row.completion_ids) == len(row.env_mask)
    mask0 = [i for i, m in enumerate(row.env_mask) if m == 0]
    assert "No valid tool call" in tokenizer.decode([row.completion_ids[i] for i in mask0])

    with TrajectoryStore(tmp_path / "run") as store:
        store.write(traj)
    assert read_run(tmp_path / "run") == [traj]
