"""Record the three statement levels and the difficulty labels on validated tasks, in one sandbox
per project (no revalidation: the tasks' own bug patches are applied and reverted in turn).

For each task: its failing tests run one at a time on the buggy code with a short traceback (the
subject and error for the statements; whether the output names a changed file, for the labels);
reproduction snippets made from those tests are run on the buggy code (each must fail) and then
on the clean code (each must run cleanly). The issue level is written only from snippets that
passed both; a task none of whose snippets does keeps its traceback and terse levels only.

    python -m envfarm.suitegen.restate envfarm/tasks/builtin/funcy.jsonl ...   # rewrites in place
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import re
import shlex
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from envfarm.sandbox.base import Sandbox, SandboxSpec
from envfarm.sandbox.images import Project, load_projects
from envfarm.suitegen import levels
from envfarm.suitegen.local_imports import merged_source
from envfarm.suitegen.repro import ACTUAL, repro
from envfarm.suitegen.statement import FRAME, excerpt, single_test_command, subject
from envfarm.tasks.diff import files_in_diff
from envfarm.tasks.difficulty import labels
from envfarm.tasks.grading import SandboxFactory
from envfarm.tasks.loading import load_jsonl
from envfarm.tasks.schema import Task

BUG = "/tmp/.envfarm_restate_bug.diff"
SCRIPT = "/tmp/.envfarm_repro.py"
MAX_TESTS = 6  # failing tests tried per task for snippets
# repro's: 2 reads parametrized rows and a test class's state; 3 helper modules of the test tree,
# inherited tests and `with self.assertRaises`; raise it when it learns more
SNIPPETS_VERSION = 3


@dataclass
class Tried:
    test_id: str
    snippet: str
    script: str
    compared: tuple[str, str] | None
    subject: str | None
    exception: str | None = None
    got: str | None = None


def _kind(task: Task) -> str:
    return (getattr(task, "envfarm_meta", None) or {}).get("kind", "")


def _func_line(frames: list[str], test_func: str) -> int | None:
    line = None
    for f in frames:
        m = FRAME.match(f)
        if m and m.group(3) == test_func:
            line = int(m.group(2))
    return line


def failure_sections(output: str) -> dict[str, str]:
    """pytest's FAILURES section split per test, keyed by its heading (`test_x`, `TestA.test_x`),
    each as a text `statement.excerpt` reads."""
    out: dict[str, str] = {}
    name = None
    body: list[str] = []
    for ln in output.splitlines():
        m = re.match(r"^_{3,} (\S+) _{3,}$", ln)
        if m or re.match(r"^=+ .* =+$", ln):
            if name is not None:
                out[name] = "=== FAILURES ===\n" + "\n".join(body) + "\n=== end ==="
            name, body = (m.group(1) if m else None), []
        elif name is not None:
            body.append(ln)
    return out


def _last_error(output: str) -> str | None:
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Warning|Iteration|Exit)\b", ln):
            return ln.strip()
    return None


async def _sh(sandbox: Sandbox, cmd: str, timeout: float = 60) -> tuple[int, str]:
    res = await sandbox.exec(cmd, timeout=timeout, output_limit=1 << 20)
    return (124 if res.timed_out else res.exit_code or 0), res.output


async def _run_snippet(sandbox: Sandbox, project: Project, test_file: str, script: str) -> tuple[int, str]:
    await sandbox.write_file(SCRIPT, script)
    test_dir = test_file.rsplit("/", 1)[0] if "/" in test_file else "."
    path = ":".join(p for p in (project.env.get("PYTHONPATH"), ".", test_dir) if p)
    env = {**project.env, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
    envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return await _sh(sandbox, f"cd /testbed && env {envs} timeout 30 python3 {SCRIPT} 2>&1", timeout=60)


@dataclass
class SnippetRun:
    """One snippet run on the buggy code and then on the fix."""

    bug_rc: int
    bug_output: str
    fix_rc: int | None = None  # None: not run on the fix, since it did not fail on the bug
    fix_output: str = ""

    def misbehaviour(self) -> str | None:
        """Why the snippet is no reproduction (it must fail on the bug and run on the fix), or None."""
        if self.bug_rc in (0, 124):
            return f"it does not fail on the bug (exit {self.bug_rc}): {self.bug_output[-300:]}"
        if self.fix_rc:
            return f"it fails on the fix too (exit {self.fix_rc}): {self.fix_output[-300:]}"
        return None


async def run_on_bug_then_fix(
    sandbox: Sandbox, project: Project, scripts: list[tuple[str, str]]
) -> list[SnippetRun]:
    """Each (test file, script) run on the buggy code the sandbox holds, then, for those that failed
    there, on the clean code: the one check every issue-level snippet passes, hand-written ones too.
    The sandbox is left clean."""
    try:
        runs = [SnippetRun(*await _run_snippet(sandbox, project, f, s)) for f, s in scripts]
    finally:
        await _sh(sandbox, "cd /testbed && git checkout -q -- .")
    for run, (test_file, script) in zip(runs, scripts, strict=True):
        if run.bug_rc not in (0, 124):
            run.fix_rc, run.fix_output = await _run_snippet(sandbox, project, test_file, script)
    return runs


async def _apply_bug(sandbox: Sandbox, task: Task) -> str | None:
    """Put the task's bug into the sandbox's clean checkout; the reason when it does not apply."""
    await sandbox.write_file(BUG, task.bug_patch)
    rc, out = await _sh(sandbox, f"cd /testbed && git checkout -q -- . && git apply {BUG}")
    return f"its bug patch does not apply: {out[-300:]}" if rc else None


async def snippet_misbehaves(sandbox: Sandbox, project: Project, task: Task, script: str) -> str | None:
    """Why `script` is no reproduction of the task's bug, or None when it is one (the sandbox is
    left clean)."""
    if failure := await _apply_bug(sandbox, task):
        return failure
    test_file = (task.FAIL_TO_PASS or ["."])[0].split("::")[0]
    (run,) = await run_on_bug_then_fix(sandbox, project, [(test_file, script)])
    return run.misbehaviour()


def _docstring(source: str, qualname: str) -> str | None:
    from envfarm.suitegen.generate import functions

    for name, func in functions(ast.parse(source)):
        if name == qualname:
            return ast.get_docstring(func)
    return None


async def restate_task(sandbox: Sandbox, project: Project, task: Task) -> Task:
    """The task with `statements` and `difficulty` recorded (the sandbox is left clean)."""
    meta = dict(getattr(task, "envfarm_meta", None) or {})
    kind = _kind(task)
    changed = files_in_diff(task.patch)
    if failure := await _apply_bug(sandbox, task):
        raise RuntimeError(f"{task.instance_id}: {failure}")
    tried: list[Tried] = []
    names_changed = False
    sections: dict[str, str] = {}
    first_subject: str | None = None
    ranked = [t for t in sorted(task.FAIL_TO_PASS, key=lambda t: ("[" in t, len(t), t)) if " " not in t][:MAX_TESTS]
    sources: dict[str, str] = {}

    async def reader(path: str) -> str | None:  # a helper module of the test tree, if there is one
        try:
            return (await sandbox.read_file(f"/testbed/{path}")).decode()
        except (FileNotFoundError, UnicodeDecodeError):  # the import is kept as it is
            return None

    if ranked:  # one pytest run for all of them: a section of the output each
        cmd = single_test_command(project, ranked[0]) + "".join(f" {shlex.quote(t)}" for t in ranked[1:])
        rc, output = await _sh(sandbox, cmd, timeout=300)
        names_changed = any(re.search(rf"(^|[\s/]){re.escape(p)}:\d+", output, re.M) for p in changed)
        sections = failure_sections(output)
    for test_id in ranked:
        frames, errors = excerpt(sections.get(".".join(test_id.split("::")[1:]), ""), project)
        call = subject(frames)
        call = call.removeprefix("self.") if call else call  # as the snippet writes it: `self.s.eval` is `s.eval`
        first_subject = first_subject or call
        path = test_id.split("::")[0]
        if path not in sources:
            text = (await sandbox.read_file(f"/testbed/{path}")).decode()
            sources[path] = await merged_source(path, text, reader, list(project.test_files), project.packages)
        r = repro(test_id, sources[path], _func_line(frames, test_id.split("::")[-1].split("[")[0]))
        if r is not None:
            tried.append(Tried(test_id, r.text, r.script, r.compared, call))
    runs = await run_on_bug_then_fix(sandbox, project, [(t.test_id.split("::")[0], t.script) for t in tried])
    good: list[Tried] = []
    for t, run in zip(tried, runs, strict=True):
        t.exception = _last_error(run.bug_output)
        got = [ln.split(ACTUAL, 1)[1].strip() for ln in run.bug_output.splitlines() if ln.startswith(ACTUAL)]
        t.got = got[-1] if got else None
        if run.misbehaviour() is None:
            good.append(t)
    locations = len(meta.get("locations") or []) or 1
    function = meta.get("function")
    doc = None
    if kind == "reimplement" and meta.get("path"):
        doc = _docstring((await sandbox.read_file(f"/testbed/{meta['path']}")).decode(), function or "")
    observations = []
    seen_subjects: set[str | None] = set()
    for t in good:
        if kind == "multi_location" and t.subject in seen_subjects:
            continue
        obs = levels.Observation(t.snippet, t.subject, t.exception, t.got, t.compared)
        text = levels.issue(kind, [*observations, obs], function, doc)
        if levels.safe(text, task.bug_patch, task.FAIL_TO_PASS):
            observations.append(obs)
            seen_subjects.add(t.subject)
        if len(observations) >= (min(locations, 3) if kind == "multi_location" else 1):
            break
    statements = {"traceback": task.problem_statement}
    if observations:
        statements["issue"] = levels.issue(kind, observations, function, doc)
    fallback = [levels.Observation("", first_subject, None)] if first_subject else []
    terse = levels.terse(kind, observations or fallback, len(task.FAIL_TO_PASS), locations, function, doc)
    if levels.safe(terse, task.bug_patch, task.FAIL_TO_PASS):
        statements["terse"] = terse
    meta["names_changed_file"] = names_changed
    row = {**task.model_dump(), "envfarm_meta": meta, "statements": statements}
    row["difficulty"] = labels(Task.parse(row))
    return Task.parse(row)


def backfill(task: Task) -> Task:
    """Without a sandbox: the terse level from the traceback statement's title, and the labels.

    For tasks validated before the levels existed; `restate_task` adds the issue level and
    `names_changed_file` when a sandbox pass can be afforded.
    """
    statements = dict(getattr(task, "statements", None) or {"traceback": task.problem_statement})
    if "terse" not in statements:
        head = task.problem_statement.splitlines()[0]
        m = re.match(r"^`([^`]+)` (raises \w+|returns a wrong result)$", head)
        exc = re.search(r" raises (\w+)$", head)
        what = exc.group(1) if exc else None
        obs = levels.Observation("", m.group(1) if m else None, f"{what}: " if what else None)
        meta = getattr(task, "envfarm_meta", None) or {}
        text = levels.terse(meta.get("kind", ""), [obs], len(task.FAIL_TO_PASS),
                            len(meta.get("locations") or []) or 1, meta.get("function"))
        if levels.safe(text, task.bug_patch, task.FAIL_TO_PASS):
            statements["terse"] = text
    row = {**task.model_dump(), "statements": statements}
    row["difficulty"] = labels(Task.parse(row))
    return Task.parse(row)


async def restate_project(project: Project, tasks: list[Task], factory: SandboxFactory) -> list[Task]:
    sandbox = await factory(SandboxSpec(image=project.image), f"{project.name}-restate")
    try:
        return [await restate_task(sandbox, project, t) for t in tasks]
    finally:
        await sandbox.close()


async def restate_files(paths: list[Path], workers: int = 2, require_issue: bool = False) -> dict[str, int]:
    """Rewrite each JSONL file with every task restated; returns counts of levels recorded.
    `require_issue`: a task left without the issue level (no snippet of its failing tests fails
    on the bug and runs on the fix) is dropped, as the generator rejects one of a new kind."""
    from envfarm.sandbox.docker_backend import DockerSandbox

    async def factory(spec: SandboxSpec, task_id: str) -> DockerSandbox:
        return await DockerSandbox.create(spec, run="restate", task=task_id)

    projects = load_projects()
    sem = asyncio.Semaphore(workers)
    counts: dict[str, int] = defaultdict(int)

    async def one(path: Path) -> None:
        tasks = load_jsonl(path)
        if not tasks:
            return
        async with sem:
            done = await restate_project(projects[tasks[0].repo], tasks, factory)
        if require_issue:
            kept = [t for t in done if "issue" in t.statements]  # type: ignore[attr-defined]
            counts["dropped_without_issue"] += len(done) - len(kept)
            done = kept
        path.write_text("".join(t.model_dump_json() + "\n" for t in done))
        for t in done:
            for level in t.statements:  # type: ignore[attr-defined]
                counts[level] += 1
        counts["tasks"] += len(done)
        print(f"{path.name}: {len(done)} tasks, {sum('issue' in t.statements for t in done)} with an issue "  # type: ignore[attr-defined]
              "statement", file=sys.stderr)

    await asyncio.gather(*(one(p) for p in paths))
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--require-issue", action="store_true",
                        help="drop the tasks left without the issue level (no validated reproduction snippet)")
    parser.add_argument("--offline", action="store_true",
                        help="no sandbox: record the terse level and the labels only (see backfill)")
    args = parser.parse_args(argv)
    if args.offline:
        for path in args.files:
            done = [backfill(t) for t in load_jsonl(path)]
            path.write_text("".join(t.model_dump_json() + "\n" for t in done))
            print(f"{path.name}: {len(done)} tasks, {sum('terse' in t.statements for t in done)} terse")  # type: ignore[attr-defined]
        return 0
    counts = asyncio.run(restate_files(args.files, args.workers, args.require_issue))
    print(counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
