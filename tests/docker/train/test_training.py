"""GRPO on real Docker sandboxes with a tiny random model: two optimizer steps, end to end."""

from __future__ import annotations

import json
import statistics
import time

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def trained(fixture_tasks, tmp_path_factory, tiny_training):
    return tiny_training(fixture_tasks[:2], tmp_path_factory.mktemp("train"), seed=3, max_turns=2,
                         max_observation_chars=1200, groups_per_step=2, max_steps=2, save_steps=1,
                         num_generations=2, max_completion_length=768, envs=4, demos_per_group=1,
                         run="pytest-train")


def test_two_steps_complete_and_change_parameters(trained):
    run, model = trained["run"], trained["model"]
    assert run.trainer.state.global_step == 2
    changed = [n for n, p in model.named_parameters() if not (p.detach() == trained["before"][n]).all()]
    assert len(changed) == len(trained["before"])
    assert (trained["out"] / "checkpoint-2").is_dir()


def test_rewards_reach_the_trainer_and_the_logs(trained):
    run = trained["run"]
    steps = [h for h in run.trainer.state.log_history if "reward" in h]
    assert len(steps) == 2
    rows = run.rollout.last_rows
    # the demonstration in each group resolves the task, the random model does not: the group has a spread
    expected = statistics.fmean(float(r["resolved"]) for r in rows)
    assert steps[-1]["reward"] == pytest.approx(expected)
    assert steps[-1]["frac_reward_zero_std"] == 0.0
    lines = [json.loads(x) for x in (trained["out"] / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2]
    for line in lines:
        assert len(line["groups"]) == 2 and all(g["mean"] == 0.5 and g["std"] == 0.5 for g in line["groups"])
        assert line["pass_rate"] == 0.5 and line["token_mismatches"] == 0 and line["masked"] == 0
        assert line["trainer"]["reward"] == 0.5
        assert set(line["share"]) == {"generation", "sandbox", "grading", "optimizer"}


def test_env_mask_is_zero_on_exactly_the_tool_output_tokens(trained):
    run, tokenizer = trained["run"], trained["tokenizer"]
    records, rows = run.rollout.last_records, run.rollout.last_rows
    for record, row in zip(records, rows, strict=True):
        turns = record.turns
        assert len(turns) == 2 and row["prompt_ids"] == turns[0].context_ids
        expected_mask, ids = [], []
        for i, turn in enumerate(turns):
            if i:
                expected_mask += [0] * len(turn.context_ids)
                ids += turn.context_ids
                # the masked span is the previous turn's tool output, as the template wraps it
                text = tokenizer.decode(turn.context_ids)
                assert "<tool_response>" in text or "tool call" in text.lower()
                assert turns[i - 1].observation.strip()[:40] in text
            expected_mask += [1] * len(turn.completion_ids)
            ids += turn.completion_ids
        assert row["env_mask"] == expected_mask[: len(row["env_mask"])]
        assert row["completion_ids"] == ids[: len(row["completion_ids"])]
    # TRL counted only the env_mask=1 tokens as the completion length
    last = [h for h in run.trainer.state.log_history if "reward" in h][-1]
    assert last["completions/mean_length"] == pytest.approx(statistics.fmean(sum(r["env_mask"]) for r in rows))


def test_no_sandbox_outlives_the_run(trained):
    from envfarm.sandbox.docker_backend import LABEL_OWNER, list_containers

    assert list_containers(**{LABEL_OWNER: trained["run"].runner.host_id}) == []


def test_report_shows_the_training_curves_and_a_group(trained):
    """The run report of this training run (its last batch's episodes and its train_log.jsonl) in headless
    Chromium: the training curves are drawn, and a GRPO group opens side by side. Screenshot:
    tests/artifacts/report-training.png."""
    from pathlib import Path

    from envfarm.rollout.report_browser import browser, console_errors, open_report
    from envfarm.rollout.store import TrajectoryStore
    from envfarm.rollout.summary import main as summary_main

    out = trained["out"]
    with TrajectoryStore(out, manifest={"run": "pytest-train"}) as store:
        for record in trained["run"].rollout.last_records:
            store.write(record)
    assert summary_main([str(out), "--no-html"]) == 0 and not (out / "report.html").exists()
    assert summary_main([str(out)]) == 0
    artifacts = Path(__file__).resolve().parents[2] / "artifacts"
    artifacts.mkdir(exist_ok=True)
    with browser() as driver:
        open_report(driver, out / "report.html")
        for fig in ("train-reward", "train-masked", "train-loss", "train-time"):
            assert driver.execute_script(f"return !!document.querySelector('#fig-{fig} .main-svg')"), fig
        driver.execute_script("document.getElementById('training').scrollIntoView()")
        driver.save_screenshot(str(artifacts / "report-training.png"))
        driver.get((out / "report.html").resolve().as_uri() + "#group=0")
        text = ""
        for _ in range(100):
            text = driver.execute_script("const v = document.getElementById('view'); "
                                         "return v.hidden ? '' : v.innerText")
            if text:
                break
            time.sleep(0.1)
        # the demonstration resolves, the tiny random model does not: their paths part at the first turn
        assert "(demo)" in text and "paths diverged at turn 1" in text
        assert console_errors(driver) == []
