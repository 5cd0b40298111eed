"""Task rows as the public datasets publish them, mapped onto envfarm's Task schema.

Each dataset names its columns its own way, and a row that does not fit the schema should say
which dataset it looks like and what it lacks, not just which field failed validation. So
every loader passes rows through `to_task_row`, which finds a row's layout by the columns only
that dataset has, maps it with one small function per layout, and raises a TaskError naming the
row, the layout, the missing fields and what to do. docs/TASKS.md ("Task rows from public
datasets") has the mapping table and the sources of each layout.

Detection order matters: a column one dataset shares with another is checked after the columns
that tell them apart (SWE-rebench V2 has `image_name` like SWE-smith, but also `install_config`),
and a row with `bug_patch` is already envfarm's (its `patch` is the fix, whatever else it holds).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from envfarm.tasks.diff import DiffError, reverse_diff
from envfarm.tasks.schema import TaskError

TASK, SWE_BENCH, SWE_GYM, SWE_SMITH, SWE_REBENCH, R2E_GYM, UNKNOWN = (
    "task", "swe-bench", "swe-gym", "swe-smith", "swe-rebench", "r2e-gym", "unknown")
LABELS = {
    SWE_BENCH: "SWE-bench", SWE_GYM: "SWE-Gym", SWE_SMITH: "SWE-smith", SWE_REBENCH: "SWE-rebench",
    R2E_GYM: "R2E-Gym",
}
# the columns a layout is told by, for the error messages
EVIDENCE = {
    SWE_BENCH: "it has SWE-bench's columns and no image",
    SWE_GYM: "it has SWE-bench's columns but no environment_setup_commit",
    SWE_SMITH: "it has image_name",
    SWE_REBENCH: "it has install_config",
    R2E_GYM: "it has parsed_commit_content",
}
# the columns of SWE-bench's classic rows, shared by SWE-Gym and SWE-rebench
CLASSIC_COLUMNS = ("instance_id", "base_commit", "test_patch", "FAIL_TO_PASS")
# columns only swebench 5.x's and envfarm's rows have: a row with any of them is meant as a Task.
# Not eval_script or log_parser: they are what a user adds to a classic row to make it runnable.
TASK_COLUMNS = ("image", "eval_type", "test_files")
# fields a user may add to a dataset's row (the fix for a missing one); they win over derived ones
USER_FIELDS = ("image", "eval_script", "log_parser", "eval_type", "test_files", "FAIL_TO_PASS", "PASS_TO_PASS",
               "base_commit", "instance_id")
R2E_BULK = ("parsed_commit_content", "execution_result_content", "prompt")
SWE_GYM_NAMESPACE = "xingyaoww"

EVAL_SCRIPT_HELP = (
    "Add an `eval_script` column: a bash script that, like swebench 5.x's, activates the test "
    "environment, restores the test files with `git checkout <base_commit> -- <files>`, applies the "
    "test patch (`git apply -v -` from a heredoc) and runs the tests between swebench's test-output "
    "markers (`: '{start}'` and `: '{end}'`); docs/TASKS.md, 'Task rows from public datasets', has an example"
)


def detect_layout(row: dict[str, Any]) -> str:
    """The dataset a row comes from, told by the columns only that dataset has."""
    if "bug_patch" in row:
        return TASK
    if "install_config" in row:
        return SWE_REBENCH
    if "parsed_commit_content" in row:
        return R2E_GYM
    if "image_name" in row:
        return SWE_SMITH
    if any(k in row for k in TASK_COLUMNS):
        return TASK
    if "docker_image" in row and "instance_id" in row:
        return SWE_BENCH  # R2E-Gym's SWE-bench exports and others: classic rows with an image
    if all(k in row for k in CLASSIC_COLUMNS):
        return SWE_BENCH if "environment_setup_commit" in row else SWE_GYM
    return UNKNOWN


def to_task_row(row: Any, where: str = "task") -> Any:
    """The row as the Task schema takes it; rows that already fit, and unknown ones, unchanged.

    Raises TaskError when a dataset's row lacks what a task needs and no column can supply it.
    """
    if not isinstance(row, dict):
        return row
    layout = detect_layout(row)
    if layout in (TASK, UNKNOWN):
        return row
    derived = MAPPERS[layout](row, where)
    kept = {k: v for k, v in row.items() if k not in DROPPED.get(layout, ())}
    mapped = {**kept, **{k: v for k, v in derived.items() if k not in USER_FIELDS or not row.get(k)}}
    missing = [f for f in REQUIRED[layout] if not mapped.get(f)]
    if missing:
        raise TaskError(_missing_message(row, mapped, layout, missing, where))
    return mapped


# -- one function per layout -------------------------------------------------------------------
def _from_swe_bench(row: dict[str, Any], where: str) -> dict[str, Any]:
    """SWE-bench, Lite, Verified: the image is the one swebench names for the instance (or the
    row's `docker_image`, as R2E-Gym's SWE-bench exports carry it)."""
    from swebench.task.checks import expected_image

    iid = str(row.get("instance_id") or "")
    return {"image": row.get("docker_image") or (expected_image(iid) if iid else "")}


def _from_swe_gym(row: dict[str, Any], where: str) -> dict[str, Any]:
    """SWE-Gym publishes its images as xingyaoww/sweb.eval.x86_64.<id>, `__` written `_s_`."""
    iid = str(row.get("instance_id") or "")
    return {"image": f"{SWE_GYM_NAMESPACE}/sweb.eval.x86_64.{iid.replace('__', '_s_')}:latest".lower() if iid else ""}


def _from_swe_smith(row: dict[str, Any], where: str) -> dict[str, Any]:
    """SWE-smith's `patch` introduces the bug into the repository image: it is envfarm's
    `bug_patch`, and the fix is its reverse. The tests run are the files the test ids name."""
    bug = str(row.get("patch") or "")
    try:
        fix = reverse_diff(bug)
    except DiffError as exc:
        raise TaskError(f"{_row_name(row, where)}: the `patch` of this {LABELS[SWE_SMITH]} row is the diff "
                        f"that introduces the bug, and its reverse (the fix) cannot be made: {exc}") from None
    tests = [*_as_list(row.get("FAIL_TO_PASS")), *_as_list(row.get("PASS_TO_PASS"))]
    # the row's base_commit is a commit of SWE-smith's mirror (the bug on a branch), never the one
    # envfarm makes from the image's tree: left empty, the commit made at sandbox start is the base
    return {"image": row.get("image_name") or "", "bug_patch": bug, "patch": fix, "base_commit": "",
            "test_patch": row.get("test_patch") or "",
            "test_files": sorted({t.split("::")[0] for t in tests if isinstance(t, str) and "::" in t})}


def _from_swe_rebench(row: dict[str, Any], where: str) -> dict[str, Any]:
    """SWE-rebench: classic SWE-bench columns plus the image (`docker_image` in V1, `image_name`
    in V2) and `install_config`, whose `log_parser` names one of swebench's parsers."""
    config = _json_column(row, "install_config", where)
    derived = {"image": row.get("docker_image") or row.get("image_name") or ""}
    if isinstance(config, dict) and config.get("log_parser"):
        derived["log_parser"] = config["log_parser"]
    return derived


def _from_r2e_gym(row: dict[str, Any], where: str) -> dict[str, Any]:
    """R2E-Gym: the image holds the repository at the commit before the fix and its own tests in
    /r2e_tests; the fix and the test runs before and after it are JSON columns."""
    commit = _json_column(row, "parsed_commit_content", where)
    commit = commit if isinstance(commit, dict) else {}
    repo = str(row.get("repo_name") or "")
    new_commit = str(row.get("commit_hash") or commit.get("new_commit_hash") or "")
    try:
        fix = _r2e_fix(commit)
    except (KeyError, TypeError) as exc:
        raise TaskError(f"{_row_name(row, where)}: column 'parsed_commit_content' of this {LABELS[R2E_GYM]} row "
                        f"does not hold R2E-Gym's ParsedCommit (no {exc})") from None
    return {
        "instance_id": f"{repo}-{new_commit}" if repo and new_commit else "",
        "repo": row.get("repo") or repo,
        "base_commit": commit.get("old_commit_hash") or "",
        "image": row.get("docker_image") or "",
        "patch": fix,
        "test_patch": "",
        **_r2e_tests(row, where),
    }


MAPPERS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    SWE_BENCH: _from_swe_bench, SWE_GYM: _from_swe_gym, SWE_SMITH: _from_swe_smith,
    SWE_REBENCH: _from_swe_rebench, R2E_GYM: _from_r2e_gym,
}
# columns read by the mapping and not kept on the task (R2E-Gym's hold whole files and test logs)
DROPPED = {R2E_GYM: R2E_BULK, SWE_SMITH: ("base_commit",)}  # SWE-smith's names a commit of its mirror
# what each layout's row must end up with, in the order the message names them; anything else is
# left to Task.parse's per-field messages
REQUIRED = {
    SWE_BENCH: ("eval_script", "image"),
    SWE_GYM: ("eval_script", "image"),
    SWE_SMITH: ("eval_script", "image", "patch"),
    SWE_REBENCH: ("eval_script", "image"),
    R2E_GYM: ("eval_script", "image", "base_commit", "FAIL_TO_PASS"),
}
R2E_MARKS = {"context": " ", "added": "+", "deleted": "-", "note": "\\ "}  # R2E-Gym's LineType values


# -- R2E-Gym's JSON columns --------------------------------------------------------------------
def _r2e_is_test(path: str) -> bool:
    """R2E-Gym's FileDiff.is_test_file, so the fix holds what R2E-Gym's gold patch holds."""
    parts = path.split("/")
    return (path.endswith("_test.py") or parts[-1].startswith("test_")
            or any(p in parts for p in ("tests", "Tests", "test", "Test")))


def _r2e_fix(commit: dict[str, Any]) -> str:
    """The commit's changes to Python files that are not tests, written as R2E-Gym writes them
    (ParsedCommit.get_patch(test_file=False)): the tests that grade it are the image's own."""
    out: list[str] = []
    for fd in commit.get("file_diffs") or []:
        path = fd.get("header", {}).get("file", {}).get("path", "")
        if not path.endswith(".py") or _r2e_is_test(path):
            continue
        out.append(f"diff --git a/{path} b/{path}\n")
        if misc := fd["header"].get("misc_line"):
            out.append(misc + "\n")
        if index := fd.get("index_line"):
            mode = f" {index['mode']}" if index.get("mode") else ""
            out.append(f"index {index['old_commit_hash']}..{index['new_commit_hash']}{mode}\n")
        if fd.get("minus_file") and fd.get("plus_file"):
            out.append(f"--- {fd['minus_file']['path']}\n+++ {fd['plus_file']['path']}\n")
        for hunk in fd.get("hunks") or []:
            out.append(_r2e_hunk_header(hunk["descriptor"]))
            out += [f"{R2E_MARKS[line['type']]}{line['content']}\n" for line in hunk["line_group"]["all_lines"]]
    return "".join(out)


def _r2e_hunk_header(descriptor: dict[str, Any]) -> str:
    def span(r: dict[str, Any]) -> str:
        return f"{r['start']}" if r.get("length") is None else f"{r['start']},{r['length']}"
    section = f" {descriptor['section']}" if descriptor.get("section") else ""
    return f"@@ -{span(descriptor['old_range'])} +{span(descriptor['new_range'])} @@{section}\n"


def _r2e_tests(row: dict[str, Any], where: str) -> dict[str, Any]:
    """FAIL_TO_PASS and PASS_TO_PASS from R2E-Gym's test runs before and after the fix, read with
    swebench's pytest parser (the one grading uses): the names are the ones grading will see."""
    result = _json_column(row, "execution_result_content", where)
    if not isinstance(result, dict):
        return {}
    before = _pytest_results(result.get("old_commit_res_stdout"))
    after = _pytest_results(result.get("new_commit_res_stdout"))
    passed = [t for t, status in after.items() if status == "PASSED"]
    return {"FAIL_TO_PASS": [t for t in passed if before.get(t) != "PASSED"],
            "PASS_TO_PASS": [t for t in passed if before.get(t) == "PASSED"]}


def _pytest_results(log: Any) -> dict[str, str]:
    from swebench.harness.log_parsers import PARSER_REGISTRY

    return PARSER_REGISTRY["parse_log_pytest"](log, None) if isinstance(log, str) else {}


# -- helpers -----------------------------------------------------------------------------------
def _json_column(row: dict[str, Any], column: str, where: str) -> Any:
    """A column the hub stores as a JSON string (or, from parquet structs, already decoded)."""
    value = row.get(column)
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise TaskError(f"{_row_name(row, where)}: column {column!r} of this {LABELS[detect_layout(row)]} row "
                        f"is not valid JSON ({exc.msg} at column {exc.colno})") from None


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return []  # Task.parse names the bad field
    return list(value) if isinstance(value, list | tuple) else []


def _row_name(row: dict[str, Any], where: str) -> str:
    rid = row.get("instance_id") or row.get("commit_hash") or "?"
    return f"{where} (instance_id {rid!r})"


def _missing_message(row: dict[str, Any], mapped: dict[str, Any], layout: str, missing: list[str],
                     where: str) -> str:
    """Which fields the row lacks, and for each what to add; hints from the row where it has them."""
    from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT

    advice = {
        "eval_script": EVAL_SCRIPT_HELP.format(start=START_TEST_OUTPUT, end=END_TEST_OUTPUT)
        + _eval_hint(row, layout),
        "image": "Add an `image` column naming the instance's Docker image (SWE-rebench publishes "
                 "`docker_image` for the instances it built, e.g. swerebench/sweb.eval.x86_64.<instance id with "
                 "`__` written `_1776_`>)",
        "base_commit": "`base_commit` must be the hash of the commit envfarm makes when a sandbox starts: the "
                       "bug committed as the repository's one root commit with fixed dates "
                       "(envfarm.tasks.setup.commit_bug). The hash depends on every file in the image, so make "
                       "it once in a sandbox of the image with commit_bug and add it as `base_commit`",
        "FAIL_TO_PASS": "Its execution_result_content has no pytest result lines (`PASSED <test id>`) to read "
                        "the tests from: add FAIL_TO_PASS and PASS_TO_PASS columns",
        "patch": "Its `patch` (the diff that introduces the bug) is empty: there is no task without it",
    }
    fields = " and no ".join(f"`{f}`" for f in missing)
    return (f"{_row_name(mapped, where)}: this row is in {LABELS[layout]}'s layout ({EVIDENCE[layout]}) "
            f"and has no {fields}. "
            + " ".join(f"{advice[f]}." for f in missing))


def _eval_hint(row: dict[str, Any], layout: str) -> str:
    """What the dataset itself says about running its tests, where a row says anything."""
    if layout == SWE_REBENCH:
        config = row.get("install_config")
        config = json.loads(config) if isinstance(config, str) else config
        cmd = config.get("test_cmd") if isinstance(config, dict) else None
        return f" (this row's install_config.test_cmd is {cmd!r})" if cmd else ""
    if layout == SWE_SMITH:
        return (" (SWE-smith's images keep the repository in /testbed and the tests' conda environment "
                "`testbed`; its harness runs pytest on the files FAIL_TO_PASS names)")
    if layout == R2E_GYM:
        return (" (R2E-Gym's images keep the repository in /testbed, its virtual environment in "
                "/testbed/.venv and the tests in /r2e_tests, run by `pytest -rA r2e_tests`)")
    return ""
