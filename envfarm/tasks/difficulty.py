"""Difficulty labels on tasks, and selection by them.

Every label is derived from the task's own data, so any row can be labelled (user rows too); the
builtin suite records them in each row's `difficulty` field. The labels:

- `kind`: single (one AST mutation), multi_location, reimplement, contract_change, hand-written,
  external (rows made elsewhere, e.g. SWE-bench); `mutation`: the AST mutation of a single bug;
- `locations`: places the fix must touch (the combined bugs, else the gold patch's hunks);
- `files`, `lines`: files the gold patch touches, lines it adds plus lines it removes;
- `f2p`: tests that fail with the bug (FAIL_TO_PASS);
- `statement`: the level of `problem_statement` (traceback, issue, terse);
- `names_changed_file`: whether a failing test's output (its traceback) names a file the fix
  changes (None when not measured): when it does not, the agent has to search.

Selection: a filter written as a query string, `kind=multi_location&min_locations=2`, or a dict.
Keys: `kind`, `mutation`, `project`, `statement` (also puts that level's text in
`problem_statement`; tasks without it are left out), `names_changed_file` (true/false), and each
numeric label exactly (`f2p=1`) or as a bound (`min_f2p=2`, `max_lines=4`). Several values of a
text key are separated by commas (`kind=reimplement,contract_change`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from envfarm.tasks.diff import parse_diff
from envfarm.tasks.schema import Task, TaskError

NUMERIC = ("locations", "files", "lines", "f2p")
TEXT = ("kind", "mutation", "project", "statement")
KEYS = (*TEXT, "names_changed_file", *NUMERIC, *(f"{b}_{n}" for n in NUMERIC for b in ("min", "max")))
NEW_KINDS = ("multi_location", "reimplement", "contract_change")
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")


def _meta(task: Task) -> dict[str, Any]:
    return getattr(task, "envfarm_meta", None) or {}


def statement_level(task: Task) -> str:
    """The level of the task's current problem statement."""
    for level, text in (getattr(task, "statements", None) or {}).items():
        if text == task.problem_statement:
            return level
    return "traceback" if _meta(task).get("generator") else "issue"


def labels(task: Task) -> dict[str, Any]:
    """The task's difficulty labels, computed from its data (see the module docstring)."""
    meta = _meta(task)
    files = [f for f in parse_diff(task.patch) if f.path]
    hunks = [h for f in files for h in f.hunks]
    lines = 0
    for h in hunks:
        ops = difflib.SequenceMatcher(None, h.old_lines, h.new_lines, autojunk=False).get_opcodes()
        lines += sum((i2 - i1) + (j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")
    kind = meta.get("kind")
    if kind in NEW_KINDS:
        category, mutation = kind, None
    elif kind:
        category, mutation = "single", kind
    else:
        category, mutation = ("hand-written" if task.bug_patch else "external"), None
    locations = len(meta.get("locations") or []) or (1 if category != "external" else max(1, len(hunks)))
    return {"kind": category, "mutation": mutation, "locations": locations, "files": len(files),
            "lines": lines, "f2p": len(task.FAIL_TO_PASS), "statement": statement_level(task),
            "names_changed_file": meta.get("names_changed_file")}


def task_labels(task: Task) -> dict[str, Any]:
    """The recorded labels (`difficulty`), completed from the data; the statement level is the
    current one (a selection may have changed it)."""
    recorded = getattr(task, "difficulty", None) or {}
    return {**labels(task), **{k: v for k, v in recorded.items() if v is not None}, "statement": statement_level(task)}


def parse_filter(query: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A filter from a query string or a dict; unknown keys and bad values raise TaskError."""
    if not query:
        return {}
    if isinstance(query, str):
        pairs = {}
        for part in query.split("&"):
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep or not value:
                raise TaskError(f"task filter {part!r}: write key=value (e.g. kind=multi_location&min_locations=2)")
            pairs[key.strip()] = value.strip()
        query = pairs
    out: dict[str, Any] = {}
    for key, value in query.items():
        if key not in KEYS:
            raise TaskError(f"unknown task filter key {key!r}; known keys: {', '.join(KEYS)}")
        if key in TEXT:
            out[key] = set(value.split(",")) if isinstance(value, str) else set(value)
        elif key == "names_changed_file":
            text = str(value).lower()
            if text not in (*TRUE, *FALSE):
                raise TaskError(f"task filter names_changed_file={value!r}: use true or false")
            out[key] = text in TRUE
        else:
            try:
                out[key] = int(value)
            except (TypeError, ValueError):
                raise TaskError(f"task filter {key}={value!r}: expected a whole number") from None
    return out


def _matches(lab: dict[str, Any], project: str, flt: dict[str, Any]) -> bool:
    for key, want in flt.items():
        if key == "project":
            ok = project in want
        elif key in ("kind", "mutation"):
            ok = lab.get(key) in want
        elif key == "statement":
            continue  # applied by choosing the level, see select_by
        elif key == "names_changed_file":
            ok = lab.get(key) is want
        elif key.startswith("min_"):
            ok = lab[key[4:]] >= want
        elif key.startswith("max_"):
            ok = lab[key[4:]] <= want
        else:
            ok = lab[key] == want
        if not ok:
            return False
    return True


def select_by(tasks: Iterable[Task], query: str | Mapping[str, Any] | None) -> list[Task]:
    """The tasks matching the filter, in order; with `statement`, each at that statement level."""
    flt = parse_filter(query)
    levels = flt.get("statement")
    out = []
    for task in tasks:
        if levels:
            texts = getattr(task, "statements", None) or {statement_level(task): task.problem_statement}
            level = next((lv for lv in sorted(levels) if texts.get(lv)), None)
            if level is None:
                continue
            if texts[level] != task.problem_statement:
                task = task.model_copy(update={"problem_statement": texts[level]})
        if _matches(task_labels(task), task.repo, flt):
            out.append(task)
    return out
