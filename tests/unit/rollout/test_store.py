"""The trajectory store: exact round trip, survival of a killed writer, datasets, the summary command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from envfarm.rollout import Trajectory, TrajectoryStore, data_files, read_manifest, read_run
from envfarm.rollout.summary import main as summary_main
from envfarm.rollout.tokens import build_row
from envfarm.rollout.trajectory import Timings, ToolCallRecord, Turn
from envfarm.tasks.grade_result import GradeResult


def make_trajectory(n: int, reward: float | None = 1.0) -> Trajectory:
    """A trajectory with every kind of field filled, including text that JSON must escape."""
    turns = [Turn(index=0, completion='<tool_call>{"name": "bash"}</tool_call>', observation="out \u00e9 <b>\n",
                  tool_calls=[ToolCallRecord(id="c0", name="bash", arguments=json.dumps({"command": "ls"}),
                                             output="a <b> \u00e9", seconds=0.01, command_seconds=0.001, exit_code=0)],
                  generation_seconds=0.5, tool_seconds=0.02, context_ids=[1, 2, 3], completion_ids=[4, 5],
                  logprobs=[-0.5, -0.25]),
             Turn(index=1, completion="garbage", observation="help", format_error=True, parse_errors=["x"],
                  context_ids=[6], completion_ids=[7], logprobs=[-1.0], prefix_consistent=True)]
    return Trajectory(
        episode_id=f"ep{n}", run="r", instance_id=f"task-{n}", repo="inflection", policy="scripted", seed=n,
        started_at=1.5, messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                                  {"role": "assistant", "content": "a"},
                                  {"role": "tool", "tool_call_id": "c0", "name": "bash", "content": "a\nb"}],
        turns=turns, reward=reward, resolved=reward == 1.0, terminated=True, end_reason="submit",
        error_kind=None if reward is not None else "infrastructure",
        grade=GradeResult(instance_id=f"task-{n}", tests={"t::a": "PASSED"}, resolved=reward == 1.0),
        patch="diff --git a/x b/x\n", timings=Timings(setup=1, generation=2, tools=3, grading=4, total=10))


def test_round_trip_equals_what_was_recorded(tmp_path):
    recorded = [make_trajectory(i, reward=[1.0, 0.0, None][i % 3]) for i in range(5)]
    with TrajectoryStore(tmp_path / "run", manifest={"policy": "scripted", "tasks": "builtin"}, shard_size=2) as store:
        for t in recorded:
            store.write(t)
    assert len(data_files(tmp_path / "run")) == 3  # shards rotate
    assert read_run(tmp_path / "run") == recorded
    manifest = read_manifest(tmp_path / "run")
    assert manifest["policy"] == "scripted" and manifest["versions"]["python"] and manifest["format_version"] == 2


def test_token_row_masks_tool_tokens():
    row = build_row(make_trajectory(0))
    assert (row.prompt_ids, row.completion_ids, row.env_mask, row.logprobs) == (
        [1, 2, 3], [4, 5, 6, 7], [1, 1, 0, 1], [-0.5, -0.25, 0.0, -1.0])


def test_unknown_error_kind_is_refused_when_loading():
    import pytest
    from pydantic import ValidationError

    record = make_trajectory(0, reward=None).to_dict()
    assert record["error_kind"] == "infrastructure" and Trajectory.from_dict(record).masked
    with pytest.raises(ValidationError, match="error_kind"):
        Trajectory.from_dict({**record, "error_kind": "cosmic_rays"})


def test_format_1_lines_still_read():
    record = make_trajectory(0).to_dict()
    old = {**record, "grade": json.dumps({**record["grade"], "tests": {"t::a": "PASSED"}}), "end_reason": ""}
    assert Trajectory.from_dict(old).grade.tests == {"t::a": "PASSED"}


def test_load_dataset_reads_the_shards(tmp_path):
    from datasets import load_dataset

    with TrajectoryStore(tmp_path / "run") as store:
        for i in range(3):
            store.write(make_trajectory(i, reward=None if i == 2 else 1.0))
    ds = load_dataset("json", data_files=data_files(tmp_path / "run"), split="train",
                      cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 3 and ds[0]["instance_id"] == "task-0" and ds[2]["reward"] is None
    assert ds[0]["turns"][0]["completion_ids"] == [4, 5]
    assert Trajectory.from_dict(ds[1]).grade.tests == {"t::a": "PASSED"}


WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
from test_store import make_trajectory
from envfarm.rollout import TrajectoryStore
store = TrajectoryStore({run!r})
for i in range(1000):
    store.write(make_trajectory(i))
    time.sleep(0.02)
"""


def test_killed_run_keeps_finished_episodes(tmp_path):
    run = tmp_path / "run"
    code = WRITER.format(tests=os.path.dirname(__file__), run=str(run))
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            files = data_files(run)
            if files and sum(1 for _ in open(files[0])) >= 5:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    torn: list[str] = []
    kept = read_run(run, torn)
    assert len(kept) >= 5 and len(torn) <= 1
    assert [t.episode_id for t in kept] == [f"ep{i}" for i in range(len(kept))]
    assert kept[3] == make_trajectory(3)


def test_summary_command_prints_figures_and_writes_the_report(tmp_path, capsys):
    with TrajectoryStore(tmp_path / "run", manifest={"policy": "scripted"}) as store:
        for i, reward in enumerate([1.0, 0.0, None, 1.0]):
            store.write(make_trajectory(i, reward))
    assert summary_main([str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "pass rate     66.7% (2/3)" in out and '"infrastructure": 1' in out and "seconds" in out
    assert "report" in out and (tmp_path / "run" / "report.html").is_file()  # the report's own tests: test_report_*
    assert summary_main([str(tmp_path / "run"), "--json", "--no-html"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 4


def test_summary_counts_exploit_attempts():
    from envfarm.rollout.summary import summarize

    honest, probing, caught = make_trajectory(0), make_trajectory(1, reward=0.0), make_trajectory(2, reward=0.0)
    probing.exploit_signals = ["kill -TERM 1"]
    caught.grade.tampering = ["the patch replaces _pytest.python.Function.runtest"]
    assert [t.exploit_attempt for t in (honest, probing, caught)] == [False, True, True]
    assert summarize([honest, probing, caught])["exploit_attempts"] == 2
