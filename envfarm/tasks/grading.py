"""Grade a patch against a task with swebench's own functions, in a fresh sandbox.

Grading never trusts the agent's container: a fresh one from the task's image is brought to the
base commit, the patch (the agent's diff of the repository) is applied, the eval script restores
the test files and runs them, and swebench's `get_logs_eval`, `get_eval_tests_report` and
`get_resolution_status` decide. When grading cannot run, `error_kind` says why; it is never
set for a patch that ran and was simply wrong.

The patch is inspected first (`envfarm.tasks.patch_guard`): one that reaches outside the
repository or is absurdly large is refused; files that change how the tests run (conftest.py,
sitecustomize.py, pytest configuration, ...) are reverted after it is applied; all of it is
reported in `patch_report`. The tests run with no user site and with byte code kept outside
the repository, so a planted `.pyc` or user-site module is never loaded.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Awaitable, Callable

from swebench.harness.constants import FAIL_TO_PASS, PASS_TO_PASS, EvalType, ResolvedStatus
from swebench.harness.grading import (
    get_eval_tests_report,
    get_logs_eval,
    get_resolution_status,
)
from swebench.harness.utils import make_test_spec

from envfarm.errors import ErrorKind, ImageMissingError, SandboxError
from envfarm.sandbox.base import Sandbox, SandboxBackend, SandboxFactory, SandboxSpec
from envfarm.tasks.grade_result import GradeResult
from envfarm.tasks.patch_guard import MAX_PATCH_BYTES, PatchReport, inspect_patch, revert_command
from envfarm.tasks.schema import Task
from envfarm.tasks.setup import prepare_repository

PATCH_PATH = "/tmp/.envfarm_model.patch"
EVAL_PATH = "/tmp/.envfarm_eval.sh"
# Environment of the test run: no user site-packages, byte code read from outside the repository.
# envfarm's images compile the standard library, pytest and the test modules as pytest rewrites
# them into this prefix, never the repository's source (images/*/Dockerfile); in other images it
# is empty and Python compiles on import.
PYCACHE_PREFIX = "/opt/envfarm/pycache"
EVAL_ENV = f"PYTHONNOUSERSITE=1 PYTHONPYCACHEPREFIX={PYCACHE_PREFIX}"

__all__ = ["ErrorKind", "GradeResult", "SandboxFactory", "apply_patch", "grade", "grade_in_sandbox",
           "grade_log", "grader_for", "screen_patch"]


def _fraction(part: dict[str, list[str]]) -> float:
    total = len(part["success"]) + len(part["failure"])
    return len(part["success"]) / total if total else 1.0


def grade_log(task: Task, log: str) -> GradeResult:
    """Grade an eval log with swebench's functions (no sandbox involved)."""
    spec = make_test_spec(task.swebench_instance())
    with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as fh:
        fh.write(log)
    try:
        status_map, ran = get_logs_eval(spec, fh.name)
    finally:
        os.unlink(fh.name)
    gold = {FAIL_TO_PASS: task.FAIL_TO_PASS, PASS_TO_PASS: task.PASS_TO_PASS}
    report = get_eval_tests_report(status_map, gold, eval_type=EvalType(task.eval_type))
    status = get_resolution_status(report) if ran else ResolvedStatus.NO.value
    return GradeResult(
        instance_id=task.instance_id, resolved=status == ResolvedStatus.FULL.value, status=status,
        fail_to_pass=_fraction(report[FAIL_TO_PASS]) if ran else 0.0,
        pass_to_pass=_fraction(report[PASS_TO_PASS]) if ran else 0.0,
        tests=status_map, report=report, tests_ran=ran, log_tail=log[-4000:],
    )


async def apply_patch(sandbox: Sandbox, patch: str, workdir: str = "/testbed") -> tuple[bool, str]:
    """Apply a patch as swebench does: `git apply`, then `patch --fuzz`; never partially."""
    if not patch.strip():
        return True, ""
    await sandbox.write_file(PATCH_PATH, patch if patch.endswith("\n") else patch + "\n")
    res = await sandbox.exec(
        f"cd {workdir} && (git apply -v {PATCH_PATH} || "
        f"(patch --dry-run --batch --fuzz=5 -p1 -i {PATCH_PATH} >/dev/null && "
        f"patch --batch --fuzz=5 -p1 -i {PATCH_PATH}))",
        timeout=120,
    )
    return res.exit_code == 0, res.output


def screen_patch(task: Task, patch: str) -> GradeResult | PatchReport:
    """A PATCH_REJECTED result for a patch that must not be applied at all, else its report."""
    if len(patch) > MAX_PATCH_BYTES:  # characters >= bytes / 4: cheap first look at huge input
        size = len(patch.encode("utf-8", errors="surrogateescape"))
        if size > MAX_PATCH_BYTES:
            return GradeResult(instance_id=task.instance_id, error_kind=ErrorKind.PATCH_REJECTED,
                               error=f"the patch is {size / 1e6:.1f} MB, over the {MAX_PATCH_BYTES / 1e6:.0f} MB "
                                     "limit: not applied", patch_report=PatchReport(bytes=size))
    report = inspect_patch(patch, task.restored_files)
    if report.outside_repo:
        return GradeResult(instance_id=task.instance_id, error_kind=ErrorKind.PATCH_REJECTED,
                           error=f"the patch touches paths outside the repository: {report.outside_repo[:5]}; "
                                 "not applied", patch_report=report)
    return report


async def grade_in_sandbox(sandbox: Sandbox, task: Task, patch: str,
                           timeout: float = 600.0) -> GradeResult:
    """Grade in a sandbox that is fresh from the task's image (the caller owns and closes it)."""
    screened = screen_patch(task, patch)
    if isinstance(screened, GradeResult):
        return screened
    return await _grade_screened(sandbox, task, patch, screened, timeout)


async def _grade_screened(sandbox: Sandbox, task: Task, patch: str, report: PatchReport,
                          timeout: float) -> GradeResult:
    """grade_in_sandbox for a patch `screen_patch` let through, with its report."""
    started = time.perf_counter()
    phases: dict[str, float] = {}
    clock = started

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = round(now - clock, 4)
        clock = now

    await prepare_repository(sandbox, task, for_agent=False)
    lap("prepare")
    applied, out = await apply_patch(sandbox, patch)
    if not applied:
        lap("patch")
        return GradeResult(instance_id=task.instance_id, error_kind=ErrorKind.PATCH_FAILED,
                           error="patch did not apply to the base commit", log_tail=out[-4000:],
                           seconds=time.perf_counter() - started, patch_report=report,
                           phases=phases)
    if report.reverted:
        res = await sandbox.exec(revert_command(report.reverted, task.base_commit, "/testbed"), timeout=120)
        if res.exit_code != 0:
            raise SandboxError(f"could not revert harness files {report.reverted[:5]}: {res.output[-500:]}")
    # swebench's own rendering of the script: it records the test command's exit status, which
    # get_logs_eval cross-checks against the parsed log (code that prints fake PASSED lines)
    script = make_test_spec(task.swebench_instance()).eval_script
    await sandbox.write_file(EVAL_PATH, script, mode=0o755)
    lap("patch")
    res = await sandbox.exec(f"{EVAL_ENV} bash {EVAL_PATH}", timeout=timeout, output_limit=8 << 20)
    lap("tests")
    if res.timed_out:
        return GradeResult(instance_id=task.instance_id, error_kind=ErrorKind.TIMEOUT,
                           error=f"the tests ran past {timeout:g} s", log_tail=res.output[-4000:],
                           seconds=time.perf_counter() - started, patch_report=report,
                           phases=phases)
    result = grade_log(task, res.output)
    lap("parse")
    result.seconds = time.perf_counter() - started
    result.patch_report = report
    result.phases = phases
    return result


async def grade(task: Task, patch: str, sandbox_factory: SandboxFactory | None = None,
                timeout: float = 600.0, labels: dict[str, str] | None = None) -> GradeResult:
    """Grade `patch` in a fresh sandbox from the task's pristine image; always closes it."""
    if sandbox_factory is None:
        from envfarm.sandbox.backends import default_sandbox_factory

        sandbox_factory = default_sandbox_factory()
    screened = screen_patch(task, patch)  # before any sandbox: a refused patch costs nothing
    if isinstance(screened, GradeResult):
        return screened
    started = time.perf_counter()
    sandbox: Sandbox | None = None
    result: GradeResult | None = None
    try:
        sandbox = await sandbox_factory(SandboxSpec(image=task.image, labels=labels or {}),
                                        task.instance_id)
        acquired = time.perf_counter() - started
        result = await _grade_screened(sandbox, task, patch, screened, timeout)
        result.phases = {"sandbox": round(acquired, 4), **result.phases}
        return result
    except ImageMissingError:
        raise
    except SandboxError as exc:
        return GradeResult(instance_id=task.instance_id, error_kind=ErrorKind.INFRASTRUCTURE,
                           error=str(exc), seconds=time.perf_counter() - started)
    finally:
        if sandbox is not None:
            closing = time.perf_counter()
            await sandbox.close()
            if result is not None:
                result.phases["close"] = round(time.perf_counter() - closing, 4)
                result.seconds = time.perf_counter() - started


def grader_for(backend: SandboxBackend) -> Callable[..., Awaitable[GradeResult]]:
    """The grader that goes with a backend: sim grading (latency and a drawn verdict, no sandbox)
    for simulated sandboxes, which hold no repository to test; `grade` for the others.

    Here and not on the backend because graders belong to the tasks layer, above sandboxes.
    """
    from envfarm.sandbox.sim_backend import SimBackend

    if isinstance(backend, SimBackend):
        from envfarm.tasks.sim_grading import make_sim_grader

        return make_sim_grader(backend.profile)
    return grade
