"""`python -m envfarm.launch --train --async-rollouts` end to end on Docker sandboxes with a tiny random
model saved to a folder: two optimizer steps, the summary says the rollouts were asynchronous and
within the staleness bound, and no sandbox outlives the run."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MAX_STALENESS = 1
RUN = "pytest-launch-async"


@pytest.fixture(scope="module")
def launched(fixture_tasks, tmp_path_factory):
    from envfarm import launch
    from envfarm.policy.tiny import make_tiny_model
    from envfarm.tasks.loading import BUILTIN_DIR

    model_dir = tmp_path_factory.mktemp("tiny-model")
    make_tiny_model(seed=7, save_to=model_dir)
    out = tmp_path_factory.mktemp("launch-async")
    status = launch.main([
        "--train", "--async-rollouts", "--max-staleness", str(MAX_STALENESS), "--model", str(model_dir),
        "--tasks", str(BUILTIN_DIR / "fixtures.jsonl"), "--limit-tasks", "2", "--envs", "4",
        "--num-generations", "2", "--demos-per-group", "1", "--groups-per-step", "2", "--max-steps", "2",
        "--max-turns", "2", "--command-timeout", "15", "--episode-timeout", "120", "--max-new-tokens", "16",
        "--max-completion-length", "768", "--learning-rate", "1e-2", "--save-steps", "100",
        "--output-dir", str(out), "--run", RUN,
    ])
    return {"status": status, "out": out}


def test_two_asynchronous_steps_within_the_bound(launched):
    assert launched["status"] == 0
    out = launched["out"]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["rollouts"] == "async"
    stats = summary["async"]
    assert stats["max_staleness"] == MAX_STALENESS and stats["version"] == 2
    assert stats["max_staleness_seen"] <= MAX_STALENESS
    assert stats["samples_used"] == 2 * 2 * 2 and stats["samples_used_twice"] == 0  # steps x groups x size
    lines = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2]
    assert all(len(x["groups"]) == 2 for x in lines)
    assert (out / "final" / "config.json").is_file() and (out / "final" / "tokenizer_config.json").is_file()


def test_no_sandbox_outlives_the_run(launched):
    from envfarm.sandbox.docker_backend import LABEL_RUN, list_containers

    assert list_containers(**{LABEL_RUN: RUN}) == []
