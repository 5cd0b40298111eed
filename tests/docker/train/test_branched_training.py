"""A GRPO step on branched groups: one episode forked into the group's branches at turn 1, each
branch sampled on its own, the shared prefix trained on once (tiny random model, real Docker)."""

from __future__ import annotations

import statistics

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def trained(fixture_tasks, tmp_path_factory, tiny_training):
    return tiny_training(fixture_tasks[:1], tmp_path_factory.mktemp("branched"), seed=5, max_turns=3,
                         max_observation_chars=600, groups_per_step=1, max_steps=1, save_steps=10,
                         num_generations=3, max_completion_length=2048, envs=3, branch_at=1,
                         run="pytest-branched")


def test_a_step_trains_on_branched_groups(trained):
    run = trained["run"]
    assert run.trainer.state.global_step == 1
    assert run.rollout.batches[-1]["token_mismatches"] == 0 and run.rollout.batches[-1]["masked"] == 0
    # TRL took the rows' masks: the completion length it counted is the env_mask=1 tokens, the
    # shared prefix once per group
    rows = run.rollout.last_rows
    logged = [h for h in run.trainer.state.log_history if "completions/mean_length" in h][-1]
    assert logged["completions/mean_length"] == pytest.approx(statistics.fmean(sum(r["env_mask"]) for r in rows))


def test_branches_share_one_prefix_and_train_on_it_once(trained):
    records, rows = trained["run"].rollout.last_records, trained["run"].rollout.last_rows
    assert [r.branch for r in records] == [0, 1, 2]
    assert {r.branch_of for r in records} == {records[0].episode_id} and all(r.prefix_turns == 1 for r in records)
    assert all(r.num_turns == 3 for r in records)
    first = records[0].turns[0]
    assert all(r.turns[0].completion_ids == first.completion_ids and r.turns[0].context_ids == first.context_ids
               for r in records)
    assert len({tuple(r.turns[1].completion_ids) for r in records}) == 3  # each branch sampled its own turn 2
    shared = len(first.completion_ids)
    for i, (record, row) in enumerate(zip(records, rows, strict=True)):
        assert row["prompt_ids"] == first.context_ids and row["completion_ids"][:shared] == first.completion_ids
        assert row["env_mask"][:shared] == [int(i == 0)] * shared  # the prefix counts in branch 0 only
        assert sum(row["env_mask"]) == sum(len(t.completion_ids) for t in record.turns[(i > 0):])


def test_no_sandbox_outlives_the_run(trained):
    from envfarm.sandbox.docker_backend import LABEL_OWNER, list_containers

    assert list_containers(**{LABEL_OWNER: trained["run"].runner.host_id}) == []
