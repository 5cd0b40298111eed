"""Bad input, one clear error each: the message names what is wrong and, where it can, the fix.

Several of these are also covered where their code lives (the unit tests of tasks, policy and
env); this file walks the whole list in one place so that a regression in any of them shows
here. The two that need a Docker engine are in tests/docker/test_bad_input_docker.py.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from envfarm.env.parsing import parse_tool_calls
from envfarm.errors import ErrorKind
from envfarm.policy.loader import PolicyLoadError, load_policy
from envfarm.sandbox.base import SandboxSpec
from envfarm.tasks.grading import grade
from envfarm.tasks.loading import BUILTIN_DIR
from envfarm.tasks.schema import Task, TaskError


@pytest.fixture(scope="module")
def row() -> dict:
    return json.loads((BUILTIN_DIR / "fixtures.jsonl").read_text().splitlines()[0])


async def _no_sandbox(spec: SandboxSpec, task_id: str):
    raise AssertionError("a refused patch must not cost a sandbox")


@pytest.mark.parametrize("field,value,words", [
    ("FAIL_TO_PASS", [], ["FAIL_TO_PASS", "at least one test"]),
    ("FAIL_TO_PASS", "not json", ["FAIL_TO_PASS", "JSON"]),
    ("base_commit", "abc", ["base_commit", "commit hash"]),
    ("log_parser", "parse_log_nothing", ["log_parser", "unknown log parser"]),
    ("eval_type", "vibes", ["eval_type"]),
    ("image", None, ["image"]),
])
def test_malformed_task_row_names_the_field(row, field, value, words):
    bad = {**row, field: value}
    if value is None:
        del bad[field]
    with pytest.raises(TaskError) as err:
        Task.parse(bad, where="tasks.jsonl line 3")
    for word in words + ["tasks.jsonl line 3", row["instance_id"]]:
        assert word in str(err.value), str(err.value)


def test_task_row_that_is_not_an_object():
    with pytest.raises(TaskError, match="expected an object"):
        Task.parse(["a", "list"], where="row 1")  # type: ignore[arg-type]


@pytest.mark.parametrize("spec,match", [
    ("envfarm_no_such_plugin:Policy", "cannot import module"),
    ("json:dumps", "cannot be called as act|has no `act` method|calling"),
    ("json:JSONDecoder", "has no `act` method"),
    ("not a spec", "expected 'package.module:attr'"),
])
def test_policy_plugin_that_does_not_import_or_fit(spec, match):
    with pytest.raises(PolicyLoadError, match=match):
        load_policy(spec)


@pytest.mark.parametrize("text", [
    '<tool_call>{"name": "bash", "arguments": {"command": </tool_call>',
    '<tool_call>{"arguments": {}}</tool_call>',
    '<tool_call>{"name": "bash", "arguments": "[1, 2]"}</tool_call>',
    "```bash\nls\n```\n```bash\npwd\n```",
])
def test_malformed_tool_calls_give_errors_not_exceptions(text):
    parsed = parse_tool_calls(text)
    assert not parsed.calls and parsed.errors and all(isinstance(e, str) and e for e in parsed.errors)


def test_non_text_action_is_an_error_not_an_exception():
    parsed = parse_tool_calls(b"\xff\xfe")  # type: ignore[arg-type]
    assert not parsed.calls and "must be text" in parsed.errors[0]


def test_patch_of_50_megabytes_is_refused_without_a_sandbox(row):
    task = Task.parse(row)
    big = "diff --git a/big.txt b/big.txt\nnew file mode 100644\n--- /dev/null\n+++ b/big.txt\n@@ -0,0 +1,1 @@\n+" \
        + "x" * (50 << 20) + "\n"
    result = asyncio.run(grade(task, big, _no_sandbox))
    assert result.error_kind == ErrorKind.PATCH_REJECTED and "MB" in result.error and "limit" in result.error
    assert not result.resolved


@pytest.mark.parametrize("path", ["../outside.py", "/etc/passwd", ".git/hooks/post-checkout", "a/../../x.py"])
def test_patch_with_paths_outside_the_repository_is_refused_and_named(row, path):
    task = Task.parse(row)
    patch = f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+x\n"
    result = asyncio.run(grade(task, patch, _no_sandbox))
    assert result.error_kind == ErrorKind.PATCH_REJECTED and "outside the repository" in result.error
    assert path in result.patch_report.outside_repo
