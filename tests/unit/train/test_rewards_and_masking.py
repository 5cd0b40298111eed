"""Rewards and advantages without Docker: TRL's own advantage computation on replayed episodes.

The episodes are replayed records (the farm is not what is under test here); everything from
the rollout function on is the real code: rows, masking, group dropping, TRL's reward and
advantage path.
"""

from __future__ import annotations

import pytest

from envfarm.errors import ErrorKind
from envfarm.rollout.tokens import TokenMismatch, build_row, check_row
from envfarm.rollout.trajectory import Trajectory, Turn
from envfarm.tasks.grade_result import GradeResult
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
from envfarm.train.config import RewardWeights, TrainConfig
from envfarm.train.groups import settle_groups
from envfarm.train.rewards import fail_to_pass_reward, format_reward, resolved_reward
from envfarm.train.rollout_func import FarmRollout

G = 3


def episode(instance_id: str, reward: float | None, error_kind: str | None = None,
            tokens: bool = True) -> Trajectory:
    turns = []
    if tokens:
        turns = [Turn(index=0, completion="a", observation="out", context_ids=[5, 6, 7], completion_ids=[8, 9, 2],
                      logprobs=[-1.0, -2.0, -0.5], finish_reason="stop"),
                 Turn(index=1, completion="b", observation="done", context_ids=[11, 12], completion_ids=[13, 2],
                      logprobs=[-0.1, -0.2], finish_reason="stop", prefix_consistent=True)]
    resolved = reward == 1.0
    grade = GradeResult(instance_id=instance_id, fail_to_pass=1.0 if resolved else 0.25) if reward is not None \
        else None
    return Trajectory(episode_id="e", instance_id=instance_id, turns=turns, reward=reward, resolved=resolved,
                      error_kind=error_kind, grade=grade)


class Replay:
    """Stands in for the farm: returns the given records for the batch."""

    def __init__(self, records: list[Trajectory]) -> None:
        self.records = records

    def set_policy(self, policy: object) -> None:
        pass

    def run(self, tasks, group_size):
        assert group_size == G and len(tasks) == len(self.records)
        return self.records


@pytest.fixture(scope="module")
def tasks():
    return load_jsonl(BUILTIN_DIR / "fixtures.jsonl")[:3]


def advantages(tasks, records, tmp_path, weights: RewardWeights | None = None):
    from trl import GRPOTrainer

    from envfarm.policy.tiny import make_tiny_model
    from envfarm.train.rewards import reward_funcs
    from envfarm.train.trainer import grpo_config, task_dataset

    model, tokenizer = make_tiny_model()
    cfg = TrainConfig(num_generations=G, rewards=weights or RewardWeights())
    rollout = FarmRollout(tasks, Replay(records), cfg, tokenizer)
    funcs, _ = reward_funcs(cfg.rewards)
    args = grpo_config(cfg, str(tmp_path), groups_per_step=len(records) // G, max_steps=1)
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, processing_class=tokenizer,
                          train_dataset=task_dataset(tasks), rollout_func=rollout)
    trainer.model.train()
    inputs = [{"prompt": r.instance_id} for r in records]
    out = trainer._generate_and_score_completions(inputs)  # TRL's own reward and advantage path
    return out["advantages"].tolist(), rollout, out


def test_equal_rewards_give_zero_advantage_and_failures_are_no_zero(tasks, tmp_path):
    a, b, c = (t.instance_id for t in tasks)
    records = [
        episode(a, 1.0), episode(a, 1.0), episode(a, 1.0),  # all equal: no signal
        episode(b, 1.0), episode(b, 0.0), episode(b, None, "infrastructure", tokens=False),
        episode(c, None, "infrastructure"), episode(c, None, "policy"), episode(c, 0.0),  # mostly failed: dropped
    ]
    adv, rollout, out = advantages(tasks, records, tmp_path)
    assert adv[0:3] == [0.0, 0.0, 0.0]
    # the infrastructure failure is out of the baseline: [1, 0] has mean 0.5, not [1, 0, 0]'s 1/3
    assert adv[5] == 0.0 and adv[3] > 0 and adv[4] < 0 and adv[3] == pytest.approx(-adv[4])
    assert adv[6:9] == [0.0, 0.0, 0.0]
    assert rollout.batches[-1]["groups_dropped"] == 1
    assert [g["dropped"] for g in rollout.batches[-1]["groups"]] == [False, False, True]
    # nothing to train on where the episode has no verdict: its loss mask is all zero
    assert rollout.last_rows[5]["env_mask"] == [0]
    assert out["tool_mask"][1].tolist()[:5] == [1, 1, 1, 0, 0]


def test_shaping_terms_keep_failures_masked(tasks, tmp_path):
    a = tasks[0].instance_id
    records = [episode(a, 1.0), episode(a, 0.0), episode(a, None, "infrastructure")]
    adv, rollout, _ = advantages(tasks, records, tmp_path, RewardWeights(resolved=1.0, fail_to_pass=0.5, format=0.1))
    assert adv[2] == 0.0 and adv[0] == pytest.approx(-adv[1]) and adv[0] > 0
    rows = rollout.last_rows
    kwargs = {key: [r[key] for r in rows] for key in rows[0]}
    for func in (resolved_reward, fail_to_pass_reward, format_reward):
        values = func(completions=[""] * 3, **kwargs)
        assert values[2] is None and None not in values[:2]
    assert fail_to_pass_reward(completions=[""] * 3, **kwargs)[:2] == [1.0, 0.25]


def test_infrastructure_failure_is_never_a_zero_reward():
    records = [episode("x", None, ErrorKind.INFRASTRUCTURE), episode("x", 0.0)]
    assert [r.masked for r in records] == [True, False]
    masked, verdicts = settle_groups(records, [True, False], 2, max_masked_fraction=0.5)
    assert masked == [True, False] and not verdicts[0].dropped
    assert resolved_reward([""] * 2, resolved=[False, False], reward_masked=masked) == [None, 0.0]


def test_token_check_rejects_rows_that_are_not_the_generated_tokens():
    record = episode("x", 0.0)
    row = build_row(record, 100, pad_id=0, eos_id=2)
    assert row.completion_ids == [8, 9, 2, 11, 12, 13, 2] and row.env_mask == [1, 1, 1, 0, 0, 1, 1]
    check_row(record, row)
    row.completion_ids[3] = 99
    with pytest.raises(TokenMismatch):
        check_row(record, row)
    drifted = episode("x", 0.0)
    drifted.turns[1].prefix_consistent = False
    with pytest.raises(TokenMismatch):
        build_row(drifted, 100, pad_id=0, eos_id=2)


@pytest.mark.parametrize("limit", [1, 3, 4, 5, 6])
def test_a_row_cut_at_max_completion_length_passes_the_check_wherever_the_cut_falls(limit):
    """Segments wholly past the cut are gone, not different: the check must not mask the row."""
    record = episode("x", 0.0)
    row = build_row(record, limit, pad_id=0, eos_id=2)
    assert row.completion_ids == [8, 9, 2, 11, 12, 13, 2][:limit] and row.truncated_tokens == 7 - limit
    check_row(record, row)
    row.completion_ids[-1] = 99  # what is left is still compared
    with pytest.raises(TokenMismatch):
        check_row(record, row)
