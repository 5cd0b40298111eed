"""Turn a bug (a changed source file in a repository image) into a validated Task.

Validation follows SWE-smith: a candidate becomes a task only if, run in its image, some tests
fail with the bug (FAIL_TO_PASS >= 1), others still pass (PASS_TO_PASS >= 1), and the gold patch
(the reverse of the bug) resolves it when graded by the same path the agents are graded by.
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT, TestStatus
from swebench.harness.log_parsers import PARSER_REGISTRY

from envfarm.sandbox.base import Sandbox, SandboxSpec
from envfarm.sandbox.images import Project
from envfarm.suitegen.eval_script import make_eval_script
from envfarm.tasks.grading import SandboxFactory, grade
from envfarm.tasks.schema import Task
from envfarm.tasks.setup import commit_bug

PASSING = {TestStatus.PASSED.value, TestStatus.XFAIL.value}
LOG_PARSER = "parse_log_pytest"


@dataclass
class Candidate:
    """A proposed bug: one file of the project with new content, or several (`files`)."""

    instance_id: str
    path: str  # relative to /testbed
    buggy_source: str
    problem_statement: str
    meta: dict | None = None  # e.g. mutation kind, function name (kept out of the statement)
    files: dict[str, str] | None = None  # path -> buggy text, for bugs over several files
    # Multi-location bugs: for each location, the files as they are with only that location left
    # buggy (every other one fixed). Each must leave some test failing, or that location is no bug.
    partials: list[dict[str, str]] = field(default_factory=list)

    @property
    def sources(self) -> dict[str, str]:
        return dict(self.files) if self.files else {self.path: self.buggy_source}


class Rejected(Exception):
    """The candidate is not a usable task; the message says why."""


# Writes the problem statement from the buggy sandbox: (sandbox, project, FAIL_TO_PASS, bug patch)
# -> the statement, or None when no clear failure can be shown.
Describe = Callable[[Sandbox, Project, list[str], str], Awaitable["str | None"]]


def _fail_pass(clean: dict[str, str], buggy: dict[str, str]) -> tuple[list[str], list[str]]:
    f2p = sorted(t for t, s in clean.items() if s in PASSING and buggy.get(t) not in PASSING)
    p2p = sorted(t for t, s in clean.items() if s in PASSING and buggy.get(t) in PASSING)
    return f2p, p2p


async def run_tests(sandbox: Sandbox, project: Project, timeout: float = 300) -> dict[str, str]:
    """The project's test suite in the sandbox's current state, parsed by swebench's parser."""
    env = " ".join(f"{k}={v}" for k, v in project.env.items())
    res = await sandbox.exec(
        f"cd /testbed && echo '{START_TEST_OUTPUT}'; {env} {project.test_cmd}; echo '{END_TEST_OUTPUT}'",
        timeout=timeout, output_limit=16 << 20,
    )
    if res.timed_out:
        raise Rejected(f"the test suite ran past {timeout:g} s")
    log = res.output.split(START_TEST_OUTPUT, 1)[-1].split(END_TEST_OUTPUT, 1)[0]
    return PARSER_REGISTRY[LOG_PARSER](log, None)  # type: ignore[arg-type]


async def diff_against_clean(sandbox: Sandbox, path: str, new_source: str) -> str:
    """Write `new_source` over `path` and return `git diff` of it against the clean commit.

    The file keeps its mode: a bug patch that also changed the mode would mark the changed file
    for the agent (see `envfarm.tasks.setup.APPLY_QUIETLY`).
    """
    mode = await sandbox.exec(f"stat -c %a /testbed/{path}", timeout=30)
    await sandbox.write_file(f"/testbed/{path}", new_source,
                             mode=int(mode.output.strip(), 8) if mode.ok else 0o644)
    res = await sandbox.exec(f"cd /testbed && git diff -- {path}", timeout=60, output_limit=8 << 20)
    return res.output if res.output.endswith("\n") or not res.output else res.output + "\n"


async def check_partials(sandbox: Sandbox, project: Project, partials: list[dict[str, str]],
                         clean_results: dict[str, str], timeout: float) -> None:
    """Every location of a multi-location bug matters: fixing all but one leaves a test failing.

    Runs in the buggy sandbox (the bug committed as HEAD); the work tree is reset after each.
    """
    for i, files in enumerate(partials):
        for path, text in files.items():
            await sandbox.write_file(f"/testbed/{path}", text)
        results = await run_tests(sandbox, project, timeout=timeout)
        await sandbox.exec("cd /testbed && git checkout -q -- .", timeout=60)
        if all(results.get(t) in PASSING for t, st in clean_results.items() if st in PASSING):
            raise Rejected(f"location {i + 1} is no bug: with every other location fixed all tests pass")


async def derive_task(candidate: Candidate, project: Project, sandbox_factory: SandboxFactory,
                      clean_results: dict[str, str] | None = None, check_runs: int = 2,
                      describe: Describe | None = None, test_timeout: float = 300,
                      check_empty: bool = True) -> Task:
    """Validate one candidate in sandboxes and return the task, or raise Rejected.

    The first run on the buggy code already decides most rejections (no test fails), so the
    check runs stop there. With `describe` and an empty `candidate.problem_statement`, the
    statement is written from the buggy sandbox while it is still open. `test_timeout` bounds
    each run (a bug can make the suite loop forever). `check_empty=False` skips grading the empty
    patch, whose outcome the check runs on the same buggy code have already shown.
    """
    sandbox = await sandbox_factory(SandboxSpec(image=project.image), candidate.instance_id)
    statement = candidate.problem_statement
    try:
        if clean_results is None:
            clean_results = await run_tests(sandbox, project, timeout=test_timeout)
        paths = sorted(candidate.sources)
        bug_patch = "".join([await diff_against_clean(sandbox, p, text)
                             for p, text in sorted(candidate.sources.items())])
        if not bug_patch.strip():
            raise Rejected("the change is empty")
        quoted = " ".join(shlex.quote(p) for p in paths)
        gold = await sandbox.exec(f"cd /testbed && git diff -R -- {quoted}", timeout=60,
                                  output_limit=8 << 20)
        await sandbox.exec(f"cd /testbed && git checkout -q -- {quoted}", timeout=60)
        base_commit = await commit_bug(sandbox, bug_patch)
        runs = []
        for _ in range(check_runs):
            runs.append(await run_tests(sandbox, project, timeout=test_timeout))
            f2p, p2p = _fail_pass(clean_results, runs[0])
            if not f2p:
                raise Rejected("no test fails with the bug")
            if not p2p:
                raise Rejected("no test still passes with the bug")
            # only tests that are stable on the clean code count (ids the clean runs marked flaky,
            # e.g. parametrized from a set in hash order, say nothing about the bug)
            if any(runs[-1].get(t) != runs[0].get(t) for t, st in clean_results.items() if st in PASSING):
                raise Rejected("flaky: two runs of the tests on the buggy code disagree")
        await check_partials(sandbox, project, candidate.partials, clean_results, test_timeout)
        if not statement and describe is not None:
            statement = await describe(sandbox, project, f2p, bug_patch) or ""
    finally:
        await sandbox.close()
    if not statement:
        raise Rejected("no problem statement: no failing test shows a clear error")
    task = Task(
        instance_id=candidate.instance_id, repo=project.name, version=project.version,
        base_commit=base_commit, problem_statement=statement,
        patch=gold.output if gold.output.endswith("\n") else gold.output + "\n", test_patch="",
        FAIL_TO_PASS=f2p, PASS_TO_PASS=p2p, image=project.image,
        eval_script=make_eval_script(base_commit, list(project.test_files), project.test_cmd,
                                     env=project.env),
        log_parser=LOG_PARSER, eval_type="pass_and_fail", bug_patch=bug_patch,
        test_files=list(project.test_files), **({"envfarm_meta": candidate.meta} if candidate.meta else {}),
    )
    for patch, want in ((task.patch, True), ("", False))[:2 if check_empty else 1]:
        verdict = await grade(task, patch, sandbox_factory, timeout=test_timeout + 60)
        if verdict.error_kind or verdict.resolved != want:
            raise Rejected(f"{'gold' if want else 'empty'} patch graded {verdict.status} "
                           f"({verdict.error_kind or 'no error'}: {verdict.error})")
    return task
