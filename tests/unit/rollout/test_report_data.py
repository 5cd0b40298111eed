"""The run report's data: clipping, rows, per-test statuses, GRPO groups, training curves, task fields."""

from __future__ import annotations

import json

from envfarm.rollout.report_data import (
    Limits,
    clip,
    diverged_at,
    episode_detail,
    episode_row,
    groups,
    read_train_log,
    task_meta,
    train_curves,
)
from envfarm.rollout.trajectory import Timings, ToolCallRecord, Trajectory, Turn
from envfarm.tasks.difficulty import task_labels
from envfarm.tasks.grade_result import GradeResult
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl


def turn(i: int, command: str, output: str = "ok") -> Turn:
    call = ToolCallRecord(id=f"c{i}", name="bash", arguments=json.dumps({"command": command}), output=output)
    return Turn(index=i, completion=f"run {command}", observation=output, tool_calls=[call])


def episode(n: int, commands: list[str], reward: float | None = 1.0, group: str = "g", member: int = 0,
            **fields) -> Trajectory:
    return Trajectory(episode_id=f"e{n}", instance_id="proj__t-1", repo="proj", group_id=group, member=member,
                      turns=[turn(i, c) for i, c in enumerate(commands)], reward=reward, resolved=reward == 1.0,
                      error_kind=None if reward is not None else "infrastructure",
                      timings=Timings(setup=1, generation=2, tools=3, grading=4, total=10), **fields)


def test_clip_keeps_head_and_tail_and_counts_what_it_cut():
    assert clip("short", 10) == {"t": "short"}
    text = "H" * 600 + "M" * 1000 + "T" * 400
    c = clip(text, 900)
    assert c["cut"] == len(text) - 900 and len(c["t"]) == 900
    assert c["t"][: c["at"]] == "H" * 600 and c["t"][c["at"]:] == "T" * 300
    assert clip(None, 5) == {"t": ""}


def test_rows_say_status_and_exploit_signals_from_the_agent_and_the_grader():
    resolved, failed, masked = episode(0, ["ls"]), episode(1, ["ls"], 0.0), episode(2, ["ls"], None)
    failed.exploit_signals = ["signals PID 1"]
    failed.grade = GradeResult(instance_id="proj__t-1", tampering=["replaces runtest"])
    rows = [episode_row(n, t, {"kind": "off_by_one"}) for n, t in enumerate([resolved, failed, masked])]
    assert [r["status"] for r in rows] == ["resolved", "failed", "masked"]
    assert rows[1]["signals"] == ["signals PID 1", "grader: replaces runtest"] and rows[0]["signals"] == []
    assert rows[2]["reward"] is None and rows[2]["err"] == "infrastructure"
    assert rows[0]["kind"] == "off_by_one" and rows[0]["time"]["grading"] == 4 and rows[0]["turns"] == 1


def test_grade_lists_failures_first_with_their_f2p_or_p2p_set():
    t = episode(0, ["ls"], 0.0)
    t.grade = GradeResult(
        instance_id="proj__t-1", tests={"t::p2p_ok": "PASSED", "t::f2p_bad": "FAILED", "t::f2p_ok": "PASSED"},
        report={"FAIL_TO_PASS": {"success": ["t::f2p_ok"], "failure": ["t::f2p_bad", "t::never_ran"]},
                "PASS_TO_PASS": {"success": ["t::p2p_ok"], "failure": []}})
    detail = episode_detail(t, Limits(), {})
    assert detail["grade"]["tests"] == [["t::f2p_bad", "FAILED", "F2P"], ["t::never_ran", "MISSING", "F2P"],
                                        ["t::f2p_ok", "PASSED", "F2P"], ["t::p2p_ok", "PASSED", "P2P"]]


def test_details_clip_long_outputs_and_share_prompts():
    a, b = episode(0, ["cat big"]), episode(1, ["cat big"])
    for t in (a, b):
        t.messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "fix it"}]
        t.turns[0].tool_calls[0].output = "x" * 10_000
    prompts: dict[str, int] = {}
    da, db = (episode_detail(t, Limits(output=1000), prompts) for t in (a, b))
    assert list(prompts) == ["sys", "fix it"] and (da["system"], da["prompt"]) == (db["system"], db["prompt"]) == (0, 1)
    out = da["turns"][0]["calls"][0]["out"]
    assert len(out["t"]) == 1000 and out["cut"] == 9000
    assert da["turns"][0]["obs"] is None  # a turn with calls shows their outputs, not the observation again


def test_paths_diverge_at_the_first_differing_action():
    same = ["git status", "grep -n foo"]
    assert diverged_at([episode(0, same + ["pytest"]), episode(1, same + ["submit"])]) == 2
    assert diverged_at([episode(0, same), episode(1, same)]) is None
    assert diverged_at([episode(0, same), episode(1, same + ["more"])]) == 2  # one member stopped earlier
    assert diverged_at([episode(0, ["a"]), episode(1, ["b"])]) == 0
    assert diverged_at([episode(0, same)]) is None


def test_groups_order_members_and_measure_the_spread():
    run = [episode(0, ["a"], 1.0, "g1", member=1), episode(1, ["a"], 0.0, "g1", member=0),
           episode(2, ["a"], 1.0, "g2"), episode(3, ["a", "b"], 1.0, "g3", 0), episode(4, ["a", "c"], None, "g3", 1)]
    found = {g["id"]: g for g in groups(run)}
    assert set(found) == {"g1", "g3"}  # a lone episode is no group
    assert found["g1"]["members"] == [1, 0] and found["g1"]["rewards"] == [0.0, 1.0]
    assert found["g1"]["mean"] == 0.5 and found["g1"]["std"] == 0.5 and found["g1"]["diverged"] is None
    assert found["g3"]["rewards"] == [1.0, None] and found["g3"]["std"] == 0.0 and found["g3"]["diverged"] == 1


def test_train_curves_from_the_step_log(tmp_path):
    records = [{"step": 1, "step_s": 10.0, "episodes": 4, "masked": 1, "pass_rate": 0.25,
                "groups": [{"mean": 0.5, "std": 0.5}, {"mean": None, "std": None}],
                "time_s": {"generation": 5.0, "optimizer": 2.0}, "trainer": {"reward": 0.5, "reward_std": 0.4,
                                                                               "loss": 0.01}},
               {"step": 2, "step_s": 8.0, "episodes": 4, "masked": 0, "pass_rate": None,
                "groups": [{"mean": 1.0, "std": 0.0}, {"mean": 0.0, "std": 0.0}],
                "time_s": {"generation": 4.0, "sandbox": 1.0}, "trainer": {}}]
    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 3, "cut')
    torn: list[str] = []
    assert read_train_log(log, torn) == records and torn == [f"{log}:3"]
    c = train_curves(records)
    assert c["steps"] == [1, 2] and c["reward"] == [0.5, 0.5]  # TRL's reward, else the mean of the group means
    assert c["group_min"] == [0.5, 0.0] and c["group_max"] == [0.5, 1.0] and c["reward_std"] == [0.4, None]
    assert c["masked_frac"] == [0.25, 0.0] and c["loss"] == [0.01, None] and c["pass_rate"] == [0.25, None]
    assert c["split"] == {"generation": [5.0, 4.0], "optimizer": [2.0, None], "sandbox": [None, 1.0]}
    assert train_curves([])["steps"] == []


def test_task_meta_takes_kind_and_difficulty_from_the_task_labels():
    tasks = (load_jsonl(BUILTIN_DIR / "cachetools.jsonl")[:3] + load_jsonl(BUILTIN_DIR / "fixtures.jsonl")[:1]
             + load_jsonl(BUILTIN_DIR / "funcy.multi_location.jsonl")[:1])
    meta = task_meta(tasks)
    assert meta[tasks[0].instance_id] == {"kind": "single", "difficulty": "1 location, traceback"}
    assert meta[tasks[3].instance_id]["kind"] == "hand-written"
    combined = task_labels(tasks[-1])
    assert combined["locations"] >= 2
    assert meta[tasks[-1].instance_id] == {"kind": "multi_location",
                                           "difficulty": f"{combined['locations']} locations, {combined['statement']}"}
