"""Difficulty labels (derived from a task's data) and selection by them: load(), select(), --tasks."""

from __future__ import annotations

import pytest

from envfarm import launch
from envfarm.tasks import load, select
from envfarm.tasks.difficulty import KEYS, labels, parse_filter, select_by, task_labels
from envfarm.tasks.schema import Task, TaskError

GOLD = "\n".join([
    "diff --git a/pkg/a.py b/pkg/a.py", "--- a/pkg/a.py", "+++ b/pkg/a.py",
    "@@ -1,4 +1,4 @@", " def f():", "-    return 0", "+    return 1", " ", " ",
    "@@ -10,3 +10,4 @@ def g():", "     x = 1", "+    x += 1", "     return x",
    "diff --git a/pkg/b.py b/pkg/b.py", "--- a/pkg/b.py", "+++ b/pkg/b.py",
    "@@ -1,2 +1,2 @@", "-X = 2", "+X = 3", " Y = 4", ""])


def _task(**extra) -> Task:
    row = {"instance_id": "p__1", "repo": "p", "problem_statement": "tb", "FAIL_TO_PASS": ["t::a", "t::b"],
           "image": "img", "eval_script": "true", "patch": GOLD, "bug_patch": "x", **extra}
    return Task.parse(row)


def test_labels_are_derived_from_the_data():
    multi = _task(envfarm_meta={"kind": "multi_location", "locations": [{}, {}, {}], "names_changed_file": False},
                  statements={"traceback": "tb", "issue": "an issue", "terse": "short"})
    assert labels(multi) == {"kind": "multi_location", "mutation": None, "locations": 3, "files": 2, "lines": 5,
                             "f2p": 2, "statement": "traceback", "names_changed_file": False}
    single = _task(envfarm_meta={"kind": "off_by_one", "generator": "envfarm.tasks.synth"})
    assert labels(single)["kind"] == "single" and labels(single)["mutation"] == "off_by_one"
    assert labels(single)["names_changed_file"] is None  # not measured
    external = _task(bug_patch="", base_commit="a" * 40, problem_statement="an issue from a tracker")
    assert labels(external)["kind"] == "external" and labels(external)["locations"] == 3  # hunks
    assert labels(external)["statement"] == "issue"


def test_filter_syntax_and_errors():
    assert parse_filter("kind=multi_location,reimplement&min_locations=2&names_changed_file=false") == {
        "kind": {"multi_location", "reimplement"}, "min_locations": 2, "names_changed_file": False}
    with pytest.raises(TaskError, match="unknown task filter key 'colour'.*known keys: kind"):
        parse_filter("colour=red")
    with pytest.raises(TaskError, match="expected a whole number"):
        parse_filter("min_f2p=many")
    with pytest.raises(TaskError, match="key=value"):
        parse_filter("kind")
    with pytest.raises(TaskError, match="true or false"):
        parse_filter({"names_changed_file": "maybe"})
    assert set(KEYS) >= {"kind", "statement", "min_lines", "max_f2p", "project"}


def test_select_by_bounds_and_statement_level():
    a = _task(instance_id="p__a", envfarm_meta={"kind": "reimplement"},
              statements={"traceback": "tb", "issue": "the issue text", "terse": "short"})
    b = _task(instance_id="p__b", FAIL_TO_PASS=["t::a"], envfarm_meta={"kind": "off_by_one", "generator": "g"})
    assert [t.instance_id for t in select_by([a, b], "max_f2p=1")] == ["p__b"]
    assert [t.instance_id for t in select_by([a, b], {"kind": "single"})] == ["p__b"]
    issue = select_by([a, b], "statement=issue")
    assert [t.instance_id for t in issue] == ["p__a"]  # b has no issue level: left out
    assert issue[0].problem_statement == "the issue text" and task_labels(issue[0])["statement"] == "issue"
    assert a.problem_statement == "tb"  # the loaded task itself is unchanged
    assert [t.instance_id for t in select([a, b], difficulty="kind=reimplement")] == ["p__a"]


def test_load_builtin_with_a_filter():
    every = load("builtin")
    assert all(getattr(t, "difficulty", None) for t in every)  # recorded on every shipped task
    singles = load("builtin?kind=single&max_f2p=1")
    assert singles and all(task_labels(t)["kind"] == "single" and len(t.FAIL_TO_PASS) == 1 for t in singles)
    assert load("builtin:parse?kind=single") == [t for t in load("builtin:parse") if task_labels(t)["kind"] == "single"]
    assert load("builtin", difficulty={"project": "parse"}) == load("builtin:parse")
    terse = load("builtin?statement=terse&project=inflection")
    assert terse and all(t.problem_statement == t.statements["terse"] for t in terse)  # type: ignore[attr-defined]
    with pytest.raises(TaskError, match="unknown task filter key"):
        load("builtin?hardness=9")
    with pytest.raises(TaskError, match="matches the filter"):
        load("builtin?min_f2p=100000")


def test_launch_names_a_bad_filter_in_one_line(capsys):
    assert launch.main(["--backend", "sim", "--tasks", "builtin?hardness=9", "--envs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("envfarm: error: ") and "hardness" in err and "known keys" in err
