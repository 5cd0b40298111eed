"""Grade a patch against a task with swebench's own functions, in a fresh sandbox.

Grading never trusts the agent's container: a fresh one from the task's image is brought to the
base commit, the patch (the agent's diff of the repository) is applied, the eval script restores
the test files and runs them, and swebench's `get_logs_eval`, `get_eval_tests_report` and
`get_resolution_status` decide. When grading cannot run, `error_kind` says why; it is never
set for a patch that ran and was simply wrong.

The patch is inspected first (`envfarm.tasks.patch_guard`): one that reaches outside the
repository or is absurdly large is refused; one whose added lines tamper with the test
machinery (`envfarm.tasks.tampering`) scores 0 as TAMPERING without a sandbox. After it is
applied, git lists what really changed on the tree (not what the patch text seems to name), and
files that change how the tests run (conftest.py, sitecustomize.py, pytest configuration, ...)
and changed or new test files are put back; all of it is reported in `patch_report`. The tests
run with no user site and with byte code kept outside the repository, so a planted `.pyc` or
user-site module is never loaded.

The verdict comes from evidence the tests cannot simply print: the eval script exits with the
test command's own status (returned by the session's protocol, not read from the log), markers
the tests print are dropped from the log swebench parses (`harness_log`), and a guard plugin
loaded first in pytest (`pytest_guard.py`) checks pytest's machinery and records outcomes that
must agree with the log (`guard_findings`). A run that dies of the patched code is
TESTS_CRASHED (reward 0), never INFRASTRUCTURE. What this does not stop is in the README.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from swebench.harness.constants import (
    END_TEST_OUTPUT,
    FAIL_TO_PASS,
    PASS_TO_PASS,
    START_TEST_OUTPUT,
    TEST_EXIT_CODE,
    TEST_EXIT_CODE_VAR,
    EvalType,
    ResolvedStatus,
)
from swebench.harness.grading import (
    get_eval_tests_report,
    get_logs_eval,
    get_resolution_status,
)
from swebench.harness.utils import make_test_spec

from envfarm.errors import ErrorKind, ImageMissingError, SandboxError
from envfarm.sandbox.base import ExecResult, FileTooLargeError, Sandbox, SandboxBackend, SandboxFactory
from envfarm.tasks.grade_result import GradeResult
from envfarm.tasks.patch_guard import (
    MAX_PATCH_BYTES,
    PatchReport,
    inspect_patch,
    is_harness_file,
    revert_command,
    shadows_runtime,
)
from envfarm.tasks.sandbox_specs import grading_spec
from envfarm.tasks.schema import Task
from envfarm.tasks.setup import prepare_repository
from envfarm.tasks.tampering import is_test_path, screen_tampering

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
    tampering = screen_tampering(patch, task.restored_files)
    if tampering:
        return GradeResult(instance_id=task.instance_id, error_kind=ErrorKind.TAMPERING,
                           error=f"the patch tampers with the test machinery: {tampering[0]}"
                                 + (f" (and {len(tampering) - 1} more)" if len(tampering) > 1 else "")
                                 + "; not run", patch_report=report, tampering=tampering)
    return report


async def grade_in_sandbox(sandbox: Sandbox, task: Task, patch: str,
                           timeout: float = 600.0) -> GradeResult:
    """Grade in a sandbox that is fresh from the task's image (the caller owns and closes it)."""
    screened = screen_patch(task, patch)
    if isinstance(screened, GradeResult):
        return screened
    return await _grade_screened(sandbox, task, patch, screened, timeout)


async def _grade_screened(sandbox: Sandbox, task: Task, patch: str, report: PatchReport,
                          timeout: float, progress: dict[str, bool] | None = None) -> GradeResult:
    """grade_in_sandbox for a patch `screen_patch` let through, with its report.

    `progress["tests"]` turns True when the agent's code starts running (the caller attributes a
    sandbox that dies from then on to the agent: see `grade`).
    """
    started = time.perf_counter()
    phases: dict[str, float] = {}
    clock = started
    progress = {} if progress is None else progress

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = round(now - clock, 4)
        clock = now

    def failed(kind: ErrorKind, error: str, log: str = "", tampering: list[str] | None = None) -> GradeResult:
        return GradeResult(instance_id=task.instance_id, error_kind=kind, error=error, log_tail=log[-4000:],
                           seconds=time.perf_counter() - started, patch_report=report, phases=phases,
                           tampering=tampering or [])

    base_commit = await prepare_repository(sandbox, task, for_agent=False)
    before = await _untracked(sandbox)
    lap("prepare")
    applied, out = await apply_patch(sandbox, patch)
    if not applied:
        lap("patch")
        return failed(ErrorKind.PATCH_FAILED, "patch did not apply to the base commit", out)
    try:
        await _neutralise_applied_tree(sandbox, task, report, before, base_commit)
    except TreeListingError as exc:  # only what the patch put in the tree can garble it
        lap("patch")
        return failed(ErrorKind.TAMPERING, str(exc), tampering=[str(exc)])
    nonce = secrets.token_hex(8)
    guard = _make_guard(nonce)
    script = harness_script(task, guard.env)
    await sandbox.write_file(EVAL_PATH, script, mode=0o755)
    lap("patch")
    progress["tests"] = True
    res = await sandbox.exec(f"{EVAL_ENV} bash {EVAL_PATH}", timeout=timeout,
                             output_limit=8 << 20)
    lap("tests")
    if res.timed_out:
        return failed(ErrorKind.TIMEOUT, f"the tests ran past {timeout:g} s", res.output)
    try:
        record_text = await _read_record(sandbox, guard.out)
    except SandboxError as exc:  # the engine's request failed, not the tests
        return failed(ErrorKind.INFRASTRUCTURE, str(exc), res.output)
    crash = _crash(res, exit_status_known=TEST_EXIT_CODE_VAR in script)
    if crash:
        return failed(ErrorKind.TESTS_CRASHED, crash, res.output)
    log = harness_log(res.output, res.exit_code if TEST_EXIT_CODE_VAR in script else None)
    result = grade_log(task, log)
    tampering = guard_findings(task, result, _guard_record(record_text), log)
    lap("parse")
    result.seconds = time.perf_counter() - started
    result.patch_report = report
    result.phases = phases
    if tampering:
        result.tampering = tampering
        result.error_kind = ErrorKind.TAMPERING
        result.error = f"the test run was tampered with: {tampering[0]}"
        result.resolved, result.status = False, ResolvedStatus.NO.value
    return result


# -- the applied tree ------------------------------------------------------------------------
# Attributes that override any the patch brought (.git/info/attributes outranks .gitattributes):
# an encoding or filter the tree names must not make git's listing fail or print errors into it.
_NEUTRAL_ATTRIBUTES = "* -working-tree-encoding -filter -ident -text -eol -diff"


class TreeListingError(ValueError):
    """git's listing of the patched tree could not be read: the patch's doing."""


def import_roots(task: Task) -> list[str]:
    """Folders the tests import from: the repository's root, `src`, and the eval script's PYTHONPATH."""
    roots = ["", "src"]
    for value in re.findall(r"PYTHONPATH=([^\s;&|]+)", task.eval_script or ""):
        roots += [p.removeprefix("/testbed").strip("/") for p in value.strip("'\"").split(":")
                  if p and not p.startswith("$") and (p.startswith("/testbed") or not p.startswith("/"))]
    return list(dict.fromkeys(roots))


async def _listing_raw(sandbox: Sandbox, cmd: str) -> str:
    neutral = f"mkdir -p .git/info && printf '%s\\n' '{_NEUTRAL_ATTRIBUTES}' > .git/info/attributes"
    res = await sandbox.exec(f"cd /testbed && {neutral} && {{ {cmd}; }} 2>/dev/null", timeout=120,
                             output_limit=64 << 20)
    if res.exit_code != 0:
        raise SandboxError(f"could not list the repository's files: {res.output[-500:]}")
    return res.output  # not stripped: an empty first listing is an empty first line


def _names(encoded: str) -> list[str]:
    """NUL-separated names carried as base64, so that any byte of a name survives the session."""
    try:
        raw = base64.b64decode(encoded.strip() or b"", validate=True)
    except ValueError as exc:  # binascii.Error: something in the tree garbled git's listing
        raise TreeListingError(f"git's listing of the patched tree is garbled ({exc})") from None
    return [n.decode("utf-8", errors="surrogateescape") for n in raw.split(b"\0") if n]


async def _untracked(sandbox: Sandbox) -> set[str]:
    # without --exclude-standard: ignored files count too (a patch may add a .gitignore)
    return set(_names(await _listing_raw(sandbox, "git ls-files --others -z | base64 -w0")))


async def _neutralise_applied_tree(sandbox: Sandbox, task: Task, report: PatchReport, before: set[str],
                                   base_commit: str) -> None:
    """Revert harness files and test files on the tree as the patch left it, whatever its text said.

    What changed is read from git (tracked files that differ from the base commit, untracked
    files that were not there before the patch), not from the patch text, so names the diff
    parser reads differently from `git apply` or GNU patch (two spaces after `+++`, quoting,
    non-ASCII bytes) are still caught. Harness files (`patch_guard.is_harness_file`) go back to
    the base commit; test files (the task's restored files, their folders, test names anywhere)
    too, so that no new module beside the tests is there when the eval script restores them.
    """
    tracked_raw, _, untracked_raw = (await _listing_raw(
        sandbox, "git diff --name-only -z --no-renames --no-ext-diff --no-textconv HEAD | base64 -w0; echo; "
                 "git ls-files --others -z | base64 -w0")).partition("\n")
    tracked = _names(tracked_raw)
    new = [p for p in _names(untracked_raw) if p not in before]
    changed = list(dict.fromkeys(tracked + new))
    roots = import_roots(task)
    harness = [p for p in changed if is_harness_file(p) or (p in new and shadows_runtime(p, roots))]
    tests = [p for p in changed if p not in harness and is_test_path(p, task.restored_files)]
    report.reverted = list(dict.fromkeys(report.reverted + harness))
    report.test_files = list(dict.fromkeys(report.test_files + tests))
    revert = [p for p in changed if p in harness or p in tests]
    if revert:
        res = await sandbox.exec(revert_command(revert, base_commit, "/testbed"), timeout=120)
        if res.exit_code != 0:
            raise SandboxError(f"could not revert harness files {revert[:5]}: {res.output[-500:]}")


# -- the test run: the harness's own exit status, markers only where the harness wrote them ------
GUARD_SOURCE = Path(__file__).with_name("pytest_guard.py")
_GUARD_EOF = "EOF_ENVFARM_GUARD"


class _Guard:
    def __init__(self, folder: str, module: str) -> None:
        self.folder, self.module = folder, module
        self.out = f"{folder}/record.json"
        # appended after the task's own PYTHONPATH (which the eval script may set): the guard's
        # folder holds nothing else, so it shadows nothing
        source = GUARD_SOURCE.read_text()
        assert _GUARD_EOF not in source
        self.env = (f"mkdir -p {folder} && cat > {folder}/{module}.py <<'{_GUARD_EOF}'\n{source}{_GUARD_EOF}\n"
                    f'export PYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}{folder}" '
                    f'PYTEST_ADDOPTS="-p {module} ${{PYTEST_ADDOPTS:-}}" ENVFARM_GUARD_OUT={folder}/record.json')


def _make_guard(nonce: str) -> _Guard:
    """The pytest guard under a name no one can guess before this grade (a module of the same
    name planted in the repository would be imported in its place otherwise). The eval script
    writes it (`_Guard.env`), before any of the agent's code runs."""
    return _Guard(f"/tmp/.g{nonce}", f"envfarm_guard_{nonce}")


async def _read_record(sandbox: Sandbox, path: str, attempts: int = 3) -> str:
    """The guard's record through the engine's archive API, not a program in the sandbox (where
    the tests run as root, in public images, they could have replaced `cat`); "" when the tests
    left no such file or made it unreadable (the engine answers with an error: a symlink loop
    where its folder was). A request the engine never answered (a stale connection after an
    engine restart) is asked again, then is the engine's fault, never a missing record."""
    for attempt in range(attempts):
        try:
            return (await sandbox.read_file(path)).decode("utf-8", errors="replace")[:4 << 20]
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileTooLargeError):
            return ""
        except OSError as exc:
            if getattr(exc, "response", None) is not None:  # the engine answered: the tests broke the path
                return ""
            if attempt == attempts - 1:
                raise SandboxError(f"cannot read the guard's record from sandbox {sandbox.id}: {exc}") from exc
            await asyncio.sleep(0.5 * (attempt + 1))
    return ""


# Kills every process the tests left (builtins only, nothing forked, no trace lines in the log),
# keeping PID 1, this script ($$) and the session's shell ($PPID).
END_OF_TESTS = (
    "{ __ef_x=$-; set +x; } 2>/dev/null; for __ef_p in /proc/[0-9]*; do __ef_p=${__ef_p#/proc/}; "
    "case $__ef_p in 1|$$|$PPID) ;; *) kill -9 \"$__ef_p\" 2>/dev/null;; esac; done; "
    "case $__ef_x in *x*) set -x;; esac"
)


def harness_script(task: Task, setup: str = "") -> str:
    """swebench's eval script, with `setup` (the guard's environment) just before the start
    marker, ending with the test command's own exit status.

    When the tests are over, every process but PID 1, the session's shell and the script's own
    is killed (END_OF_TESTS) and the script ends at the end marker: the tested code may have
    left a process behind to write forged results into the session's output, or replaced the
    programs the script runs after the tests (its `git checkout`, restoring files in a container
    about to be removed) where it runs as their owner (root in public images). swebench's
    rendering records the status after the end marker; here the script also exits with it, so
    that the status reaches the host through the session's own protocol (a random marker per
    command), not through a line the code under test could print as well.
    """
    script = make_test_spec(task.swebench_instance()).eval_script
    if setup:
        lines = script.split("\n")
        at = next((i for i, line in enumerate(lines) if START_TEST_OUTPUT in line), None)
        if at is not None:
            script = "\n".join([*lines[:at], setup, *lines[at:]])
    lines = script.split("\n")
    end = next((i for i, line in enumerate(lines) if END_TEST_OUTPUT in line), None)
    if end is not None:  # nothing of the tests outlives them, and nothing runs after them
        script = "\n".join([*lines[:end], END_OF_TESTS, lines[end], "exec >/dev/null 2>&1"])
    if TEST_EXIT_CODE_VAR in script:
        script = script.rstrip("\n") + f'\nexit "${{{TEST_EXIT_CODE_VAR}:-1}}"\n'
    return script


def harness_log(output: str, exit_code: int | None) -> str:
    """The log swebench's parser gets: the harness's markers and exit status, the tests' output.

    swebench takes the first end marker and the first exit-status line it finds, so a test run
    that prints `>>>>> End Test Output` and `>>>>> Test Exit Code: 0` early wins against the
    harness's own lines. Here every marker after the (first, real) start marker is dropped from
    the output and the end marker and the status the harness returned are written after it.
    Without a known status (an eval script of another shape) the output is used as it is.
    """
    if exit_code is None or START_TEST_OUTPUT not in output:
        return output
    head, _, tail = output.partition(START_TEST_OUTPUT)
    head_line, _, body = tail.partition("\n")
    kept = [line for line in body.split("\n")
            if END_TEST_OUTPUT not in line and TEST_EXIT_CODE not in line and START_TEST_OUTPUT not in line]
    return (f"{head}{START_TEST_OUTPUT}{head_line}\n" + "\n".join(kept)
            + f"\n{END_TEST_OUTPUT}\n{TEST_EXIT_CODE}: {exit_code}\n")


# statuses of a test command killed by a signal (bash reports 128 + the signal's number)
_SIGNALLED = range(129, 160)


def _crash(res: ExecResult, exit_status_known: bool) -> str:
    """Why the test run counts as crashed (the agent's code died or killed it), or ""."""
    if res.limit in ("memory", "pids", "disk"):
        return f"the test run hit the grading sandbox's {res.limit} limit"
    if res.note and "shell" in res.note:
        return f"the test run killed the grading shell ({res.note.split(';')[0]})"
    if res.exit_code is None:
        return "the test run ended without an exit status"
    if exit_status_known and res.exit_code in _SIGNALLED:
        return f"the test process was killed by signal {res.exit_code - 128}"
    return ""


def _guard_record(text: str) -> dict | None:
    text = text.strip()
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return {"changed": ["the guard's record is not what the guard writes"], "outcomes": {}}
    if not isinstance(record, dict) or not isinstance(record.get("outcomes"), dict):
        return {"changed": ["the guard's record is not what the guard writes"], "outcomes": {}}
    return record


_PASSING = {"PASSED", "XFAIL"}
_GUARD_PASSING = {"passed", "xfailed", "xpassed"}


def conflicting_reports(log: str, tests: list[str]) -> list[str]:
    """Tests (whole pytest node ids, of the ones `tests` names) that the log reports both failing
    and passing. pytest reports each test once; a second, passing line is someone else's (a
    process the tests left behind writing into the session's output). Node ids are read whole
    (`FAILED <id> - <message>`, `PASSED <id>`), not cut at a space as swebench's parser does, so
    two parametrizations that share a cut id are not taken for one test."""
    failing: set[str] = set()
    passing: set[str] = set()
    wanted = tuple(tests)
    for line in log.split("\n"):
        status, _, rest = line.partition(" ")
        if status not in ("FAILED", "ERROR", "PASSED", "XFAIL") or not rest.startswith(wanted):
            continue
        node = rest.split(" - ")[0].strip()
        (failing if status in ("FAILED", "ERROR") else passing).add(node)
    return sorted(failing & passing)


def guard_findings(task: Task, result: GradeResult, record: dict | None, log: str) -> list[str]:
    """Compare the pytest guard's record with the parsed log; reasons it disagrees, or []."""
    pytest_ran = "test session starts" in log
    both = conflicting_reports(log, task.FAIL_TO_PASS + task.PASS_TO_PASS) if pytest_ran else []
    reported_twice = [f"the log reports {len(both)} test(s) both failed and passed: {both[:3]}"] if both else []
    if record is None:
        if pytest_ran and result.tests_ran:
            return ["pytest ran but ended without the guard's record (os._exit, a replaced session "
                    "or a removed record)", *reported_twice]
        return reported_twice
    findings = reported_twice + [f"replaced during the test run: {name}" for name in record.get("changed", [])]
    seen: dict[str, str] = {}
    for nodeid, outcome in record["outcomes"].items():
        for key in (nodeid, nodeid.split(" ")[0]):
            if seen.get(key) not in _GUARD_PASSING:  # the worst reading wins
                seen[key] = outcome
    if "exitstatus" not in record and result.tests_ran:
        findings.append("pytest ran but did not finish its session (the guard's record was never written)")
    claims = [t for t in task.FAIL_TO_PASS + task.PASS_TO_PASS if result.tests.get(t) in _PASSING]
    # and every `PASSED <test>` line anywhere in the log, even where a later line overrides it
    claims += [words[1] for line in log.split("\n") if line.startswith(("PASSED ", "XFAIL "))
               and len(words := line.split()) > 1 and words[1] in seen]
    forged = list(dict.fromkeys(t for t in claims if seen.get(t) not in _GUARD_PASSING))
    if forged:
        findings.append(f"the log says {len(forged)} test(s) passed that pytest did not pass: {forged[:3]}")
    return findings


async def grade(task: Task, patch: str, sandbox_factory: SandboxFactory | None = None,
                timeout: float = 600.0, labels: dict[str, str] | None = None) -> GradeResult:
    """Grade `patch` in a fresh sandbox from the task's pristine image; always closes it.

    A sandbox that fails before the agent's code runs (no engine, no container, no set-up) is
    the farm's fault: INFRASTRUCTURE. Once the tests have started, the agent's code runs in it
    and can kill the shell, the container's PID 1 or the container itself: a sandbox that dies
    then is the agent's outcome (TESTS_CRASHED, reward 0), unless the engine itself does not
    answer or has lost the container (checked before the agent is blamed).
    """
    if sandbox_factory is None:
        from envfarm.sandbox.backends import default_sandbox_factory

        sandbox_factory = default_sandbox_factory()
    screened = screen_patch(task, patch)  # before any sandbox: a refused patch costs nothing
    if isinstance(screened, GradeResult):
        return screened
    started = time.perf_counter()
    sandbox: Sandbox | None = None
    result: GradeResult | None = None
    progress: dict[str, bool] = {}
    try:
        sandbox = await sandbox_factory(grading_spec(task, labels=labels or {}),
                                        task.instance_id)
        acquired = time.perf_counter() - started
        result = await _grade_screened(sandbox, task, patch, screened, timeout, progress)
        result.phases = {"sandbox": round(acquired, 4), **result.phases}
        return result
    except ImageMissingError:
        raise
    except SandboxError as exc:
        if progress.get("tests") and sandbox is not None and await engine_still_answers(sandbox):
            return GradeResult(instance_id=task.instance_id, error_kind=ErrorKind.TESTS_CRASHED,
                               error=f"the grading sandbox died while the tests ran the patched code: {exc}",
                               seconds=time.perf_counter() - started, patch_report=screened)
        return GradeResult(instance_id=task.instance_id, error_kind=ErrorKind.INFRASTRUCTURE,
                           error=str(exc), seconds=time.perf_counter() - started)
    finally:
        if sandbox is not None:
            closing = time.perf_counter()
            await sandbox.close()
            if result is not None:
                result.phases["close"] = round(time.perf_counter() - closing, 4)
                result.seconds = time.perf_counter() - started


async def engine_still_answers(sandbox: Sandbox) -> bool:
    """The engine answers and still knows the container (running or exited on its own): the
    sandbox died of what ran in it, not of the farm. False for anything but a Docker sandbox."""
    container = getattr(sandbox, "container", None)
    if container is None:
        return False
    from envfarm.sandbox.docker_backend import docker_client

    def probe() -> bool:
        docker_client().ping()
        container.reload()
        return container.status in ("running", "exited")

    try:
        return await asyncio.wait_for(asyncio.to_thread(probe), 30)
    except Exception:  # noqa: BLE001 - any failure to ask means we cannot blame the agent
        return False


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
