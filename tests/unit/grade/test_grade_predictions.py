"""Predictions files for `python -m envfarm.grade`: what is accepted, and one clear error for what is not."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from envfarm.errors import UserInputError
from envfarm.grade.cli import build_parser, check_args
from envfarm.grade.predictions import PredictionsError, plan, read_predictions

ID = "inflection__ordinal-teens"  # a builtin task


def _row(**kw) -> dict:
    return {"instance_id": ID, "model_name_or_path": "m", "model_patch": "diff --git a/x b/x\n", **kw}


def _jsonl(tmp_path, *lines: str):
    path = tmp_path / "preds.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_jsonl_json_list_and_swe_agent_dict_read_the_same(tmp_path):
    rows = [_row(), _row(instance_id="b", model_patch=None)]
    (tmp_path / "a.json").write_text(json.dumps(rows, indent=2))
    (tmp_path / "b.json").write_text(json.dumps({r["instance_id"]: r for r in rows}))
    (tmp_path / "c.txt").write_text(json.dumps(rows))  # neither suffix: sniffed
    expected = read_predictions(str(_jsonl(tmp_path, *map(json.dumps, rows))))
    for name in ("a.json", "b.json", "c.txt"):
        got = read_predictions(str(tmp_path / name))
        assert [(p.instance_id, p.model_patch) for p in got] == [(p.instance_id, p.model_patch) for p in expected]
    assert [p.empty for p in expected] == [False, True]


@pytest.mark.parametrize("line, message", [
    ('{"instance_id": "x", ', "preds.jsonl:2: not valid JSON"),
    ('["not", "an", "object"]', "preds.jsonl:2: a prediction is an object"),
    ('{"instance_id": "x", "model_patch": ""}', "preds.jsonl:2 (instance_id 'x'): missing field(s) model_name_or_path"),
    ('{"instance_id": "", "model_name_or_path": "m", "model_patch": ""}', "preds.jsonl:2: instance_id must be"),
    ('{"instance_id": "x", "model_name_or_path": "m", "model_patch": 3}', "model_patch must be a string"),
])
def test_a_malformed_line_is_named_with_its_line(tmp_path, line, message):
    path = _jsonl(tmp_path, json.dumps(_row()), line)
    with pytest.raises(PredictionsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_predictions(str(path))


def test_a_bad_entry_of_a_json_list_is_named_with_the_line_it_starts_on(tmp_path):
    path = tmp_path / "preds.json"
    path.write_text(json.dumps([_row(), {"instance_id": "y"}], indent=2))
    with pytest.raises(PredictionsError, match=r"preds.json:7 \(instance_id 'y'\): missing field"):
        read_predictions(str(path))


def test_duplicates_identical_merge_differing_refused(tmp_path):
    assert len(read_predictions(str(_jsonl(tmp_path, json.dumps(_row()), json.dumps(_row()))))) == 1
    path = _jsonl(tmp_path, json.dumps(_row()), "", json.dumps(_row(model_patch="other")))
    with pytest.raises(PredictionsError, match=r"preds.jsonl:3: a second, different prediction .*/preds.jsonl:1\)"):
        read_predictions(str(path))


def test_plan_refuses_unknown_instances_and_sets_empty_patches_aside(tmp_path):
    preds = read_predictions(str(_jsonl(tmp_path, json.dumps(_row()), json.dumps(_row(instance_id="b", model_patch="")),
                                        json.dumps(_row(instance_id="c")))))
    work = plan(preds, {ID, "b", "c"}, done={"c"})
    assert [p.instance_id for p in work.to_grade] == [ID]
    assert [p.instance_id for p in work.empty] == ["b"] and [p.instance_id for p in work.already_done] == ["c"]
    with pytest.raises(PredictionsError, match=r"1 prediction\(s\) for instances that are not among the tasks: 'c'"):
        plan(preds, {ID, "b"}, done=set())


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "envfarm.grade", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("content, where", [
    ("{broken\n", "preds.jsonl:1: not valid JSON"),
    (json.dumps(_row(instance_id="nope__not-a-task")) + "\n", "not among the tasks: 'nope__not-a-task' (/"),
])
def test_the_command_exits_2_with_one_line_naming_file_and_line(tmp_path, content, where):
    path = tmp_path / "preds.jsonl"
    path.write_text(content)
    proc = _cli("--tasks", "builtin:inflection", "--predictions", str(path), "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("envfarm: error:") and where in lines[0], proc.stderr
    assert f"{path}" in lines[0]  # the file, by the path it was given as
    assert not (tmp_path / "logs").exists()  # nothing graded, nothing written


def test_a_missing_or_empty_file_and_bad_flags_are_refused(tmp_path):
    with pytest.raises(PredictionsError, match="none.jsonl: no such predictions file"):
        read_predictions(str(tmp_path / "none.jsonl"))
    with pytest.raises(PredictionsError, match="no predictions in this file"):
        read_predictions(str(_jsonl(tmp_path, "", "  ")))
    parser = build_parser()
    for flags, message in ((["--workers", "0"], "--workers must be at least 1"), (["--run-id", "../up"], "--run-id"),
                           (["--timeout", "0"], "--timeout must be positive")):
        args = parser.parse_args(["--tasks", "builtin", "--predictions", "gold", *flags])
        with pytest.raises(UserInputError, match=message):
            check_args(args)
