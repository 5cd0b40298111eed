"""Task schema, validation errors and loading (no Docker)."""

from __future__ import annotations

import json

import pytest

from envfarm.suitegen.eval_script import make_eval_script
from envfarm.tasks.diff import files_in_diff
from envfarm.tasks.loading import load, load_builtin, round_robin_by_project, select, split_by_project
from envfarm.tasks.schema import Task, TaskError


def _row(**over):
    row = {
        "instance_id": "x__y-1", "repo": "x/y", "base_commit": "a" * 40, "problem_statement": "broken",
        "patch": "", "test_patch": "", "FAIL_TO_PASS": ["t.py::test_a"], "PASS_TO_PASS": ["t.py::test_b"],
        "version": "1.0", "image": "img:1", "eval_script": "#!/bin/bash\ntrue\n",
        "log_parser": "parse_log_pytest", "eval_type": "pass_and_fail",
    }
    row.update(over)
    return row


def test_swebench_hub_rows_with_json_strings_parse():
    task = Task.parse(_row(FAIL_TO_PASS='["a", "b"]', PASS_TO_PASS="[]"))
    assert task.FAIL_TO_PASS == ["a", "b"] and task.PASS_TO_PASS == []


@pytest.mark.parametrize(("field", "value", "words"), [
    ("FAIL_TO_PASS", [], "at least one test"),
    ("log_parser", "parse_log_nonsense", "unknown log parser"),
    ("eval_type", "maybe", "must be one of"),
    ("base_commit", "", "base_commit"),
    ("FAIL_TO_PASS", "[not json", "not a JSON list"),
])
def test_bad_field_is_named(field, value, words):
    with pytest.raises(TaskError) as err:
        Task.parse(_row(**{field: value}), where="tasks.jsonl:3")
    msg = str(err.value)
    assert "tasks.jsonl:3" in msg and field in msg and words in msg and "x__y-1" in msg


def test_missing_field_is_named():
    row = _row()
    del row["image"]
    with pytest.raises(TaskError, match="'image'"):
        Task.parse(row)


def test_jsonl_loading_reports_line_numbers(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(_row()) + "\n{oops\n")
    with pytest.raises(TaskError, match=r"tasks.jsonl:2: not valid JSON"):
        load(str(path))


def test_directory_and_file_loading(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps(_row(instance_id="a")) + "\n")
    (tmp_path / "b.json").write_text(json.dumps([_row(instance_id="b"), _row(instance_id="c")]))
    assert [t.instance_id for t in load(str(tmp_path))] == ["a", "b", "c"]
    assert [t.instance_id for t in load(str(tmp_path / "b.json"))] == ["b", "c"]


def test_unknown_spec_says_what_is_accepted():
    with pytest.raises(TaskError, match="not 'builtin'"):
        load("./does/not/exist.jsonl")


def test_builtin_fixtures_load_and_filter():
    tasks = load_builtin()
    assert len(tasks) >= 3
    assert all(t.repo for t in tasks)
    one = select(tasks, ids=[tasks[0].instance_id])
    assert [t.instance_id for t in one] == [tasks[0].instance_id]
    with pytest.raises(TaskError, match="builtin projects"):
        load("builtin:no-such-project")


def test_split_by_project_is_deterministic_and_disjoint():
    tasks = [Task.parse(_row(instance_id=f"{r}-{i}", repo=r)) for r in "abcde" for i in range(3)]
    train, held = split_by_project(tasks, 0.4)
    assert {t.repo for t in train}.isdisjoint({t.repo for t in held})
    assert len({t.repo for t in held}) == 2
    assert split_by_project(tasks, 0.4) == (train, held)


def test_eval_script_restores_tests_and_has_swebench_markers():
    script = make_eval_script("abc123", ["tests/test_x.py"], "pytest -rA", test_patch="diff --git a/x b/x\n")
    assert script.count("git checkout -q abc123 -- tests/test_x.py") == 2
    assert ">>>>> Start Test Output" in script and ">>>>> End Test Output" in script
    assert script.index("git apply") < script.index("Start Test Output")


def test_files_in_diff():
    diff = "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\ndiff --git a/t/x.py b/t/x.py\n"
    assert files_in_diff(diff) == ["a.py", "t/x.py"]


def test_round_robin_spreads_projects():
    tasks = [Task.parse(_row(instance_id=f"{r}-{i}", repo=r)) for r, n in (("a", 3), ("b", 1)) for i in range(n)]
    order = [t.instance_id for t in round_robin_by_project(tasks)]
    assert order[:2] == ["a-0", "b-0"] and sorted(order) == sorted(t.instance_id for t in tasks)


def test_the_parsers_checked_without_swebench_are_swebench_parsers():
    from swebench.harness.log_parsers import PARSER_REGISTRY

    from envfarm.tasks.schema import PYTEST_LOG_PARSERS

    assert PYTEST_LOG_PARSERS <= set(PARSER_REGISTRY)
    assert Task.parse(_row(log_parser="parse_log_django")).log_parser == "parse_log_django"  # the rest: swebench's


def test_loading_the_builtin_suite_does_not_import_swebenchs_harness():
    """Its import (datasets, pandas, modal) would cost a fresh process about 2 s, four times the parsing."""
    import subprocess
    import sys

    code = ("import sys; from envfarm.tasks import load; n = len(load('builtin')); "
            "print(n, 'swebench.harness' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) >= 400 and out[1] == "False"
