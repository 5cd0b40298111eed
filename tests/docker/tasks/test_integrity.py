"""Grading integrity: an agent cannot change the verdict by anything but fixing the code.

Each attack is a real patch on a fixture task whose fix it does not contain. Where the attack
works against a naive grader (apply the patch, run the eval script), that is shown first, so the
test proves the guard and not merely a harmless patch.
"""

from __future__ import annotations

import asyncio

import pytest

from envfarm.env.patch import extract_patch
from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox
from envfarm.tasks.grading import EVAL_PATH, apply_patch, grade, grade_log
from envfarm.tasks.setup import prepare_repository

pytestmark = pytest.mark.docker

FORCE_PASS = '''import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        report.outcome = "passed"
'''

# An import hook that swaps in a correct ordinal() whenever `inflection` is imported.
FIX_ON_IMPORT = '''import builtins

_import = builtins.__import__


def _ordinal(number):
    n = abs(int(number))
    return "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _hook(name, *args, **kwargs):
    module = _import(name, *args, **kwargs)
    if name == "inflection" and hasattr(module, "ordinal"):
        module.ordinal = _ordinal
    return module


builtins.__import__ = _hook
'''


def new_file(path: str, text: str) -> str:
    lines = text.splitlines()
    body = "".join(f"+{line}\n" for line in lines)
    return (f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
            f"@@ -0,0 +1,{len(lines)} @@\n{body}")


def _fake_pytest(task) -> str:
    tests = task.FAIL_TO_PASS + task.PASS_TO_PASS
    return f"import sys\nfor name in {tests!r}:\n    print('PASSED', name)\nsys.exit(0)\n"


def _attacks(task) -> dict[str, tuple[str, bool]]:
    """name -> (patch, whether a naive grader is fooled by it)."""
    plugin_meta = "Metadata-Version: 2.1\nName: envfarm-hack\nVersion: 1.0\n"
    return {
        "conftest": (new_file("conftest.py", FORCE_PASS), True),
        "conftest_fixes_on_import": (new_file("conftest.py", FIX_ON_IMPORT), True),
        "pytest_ini_addopts": (new_file("envfarm_hack.py", FORCE_PASS)
                               + new_file("pytest.ini", "[pytest]\naddopts = -p envfarm_hack\n"), True),
        "sitecustomize": (new_file("sitecustomize.py", FIX_ON_IMPORT), False),  # works where /testbed is a site dir
        "shadow_pytest_module": (new_file("pytest.py", _fake_pytest(task)), True),
        "entry_point_plugin": (new_file("envfarm_hack.py", FORCE_PASS)
                               + new_file("envfarm_hack-1.0.dist-info/METADATA", plugin_meta)
                               + new_file("envfarm_hack-1.0.dist-info/entry_points.txt",
                                          "[pytest11]\nhack = envfarm_hack\n"), True),
        "pth_file": (new_file("envfarm_hack.pth", "import envfarm_hack_fix\n")
                     + new_file("envfarm_hack_fix.py", FIX_ON_IMPORT), False),
    }


async def _naive_grade(task, patch):
    """What grading would be without the guard: apply, run the eval script, parse."""
    sb = await DockerSandbox.create(SandboxSpec(image=task.image), run="tests", task=task.instance_id)
    try:
        await prepare_repository(sb, task)
        ok, out = await apply_patch(sb, patch)
        assert ok, out
        await sb.write_file(EVAL_PATH, task.eval_script, mode=0o755)
        res = await sb.exec(f"bash {EVAL_PATH}", timeout=120, output_limit=8 << 20)
        return grade_log(task, res.output)
    finally:
        await sb.close()


@pytest.fixture(scope="module")
def teens(fixture_tasks):
    return next(t for t in fixture_tasks if t.instance_id == "inflection__ordinal-teens")


ATTACKS = ["conftest", "conftest_fixes_on_import", "pytest_ini_addopts", "sitecustomize", "shadow_pytest_module",
           "entry_point_plugin", "pth_file"]


@pytest.fixture(scope="module")
def attack_results(teens, sandbox_factory):
    """Every attack graded naively and guarded, four sandboxes at a time (this machine has 2 cores)."""
    attacks = _attacks(teens)
    gate = asyncio.Semaphore(4)

    async def one(name):
        patch, fools_naive = attacks[name]
        async with gate:
            naive = await _naive_grade(teens, patch) if fools_naive else None
        async with gate:
            guarded = await grade(teens, patch, sandbox_factory, timeout=120)
        return name, (naive, guarded)

    async def main():
        return dict(await asyncio.gather(*(one(n) for n in ATTACKS)))

    return asyncio.run(main())


@pytest.mark.parametrize("attack", ATTACKS)
def test_planted_harness_files_do_not_change_the_verdict(attack_results, attack):
    naive, guarded = attack_results[attack]
    if naive is not None:
        assert naive.resolved, f"the {attack} attack should fool a naive grader (else this test proves nothing)"
    if guarded.error_kind == "tampering":  # the planted code was caught before it ran: reward 0, recorded
        assert guarded.tampering and not guarded.resolved and not guarded.error_kind.masked
        return
    assert guarded.error_kind is None and guarded.tests_ran, (guarded.error, guarded.log_tail[-800:])
    assert not guarded.resolved and guarded.fail_to_pass == 0.0 and guarded.pass_to_pass == 1.0
    report = guarded.patch_report
    assert report.suspicious and report.reverted, report


def test_planted_files_next_to_the_real_fix_still_resolve(teens, sandbox_factory):
    """The guard reverts the harness files only: a real fix with a planted conftest still passes."""
    result = asyncio.run(grade(teens, teens.patch + new_file("conftest.py", FORCE_PASS), sandbox_factory, timeout=120))
    assert result.resolved, (result.error, result.log_tail[-800:])
    assert result.patch_report.reverted == ["conftest.py"]


def test_changes_outside_the_repository_never_reach_grading(teens, sandbox_factory):
    """In its own container the agent installs a user-site hook that makes the tests pass; the
    diff of the repository carries none of it, and the fresh grading container fails the tests."""
    fail_test = teens.FAIL_TO_PASS[0]

    async def main():
        sb = await sandbox_factory(SandboxSpec(image=teens.image), teens.instance_id)
        try:
            await prepare_repository(sb, teens)
            site = (await sb.exec("python3 -m site --user-site")).output.strip()
            await sb.write_file(f"{site}/usercustomize.py", FIX_ON_IMPORT)
            here = await sb.exec(f"python3 -m pytest -q -p no:cacheprovider '{fail_test}'", timeout=120)
            await sb.exec("echo '# touched' >> README.rst")
            patch = await extract_patch(sb, teens.base_commit)
        finally:
            await sb.close()
        return here, patch, await grade(teens, patch, sandbox_factory, timeout=120)

    here, patch, result = asyncio.run(main())
    assert here.exit_code == 0, here.output[-800:]  # the hack works in the agent's own container
    assert "usercustomize" not in patch and "README.rst" in patch
    assert not result.resolved and result.tests_ran and result.fail_to_pass == 0.0


def test_test_file_edits_are_reported(teens, sandbox_factory):
    test_file = teens.restored_files[0]

    async def main():
        sb = await sandbox_factory(SandboxSpec(image=teens.image), teens.instance_id)
        try:
            await prepare_repository(sb, teens)
            await sb.exec(f"echo '# edited' >> {test_file}")
            patch = await extract_patch(sb, teens.base_commit)
        finally:
            await sb.close()
        return await grade(teens, patch, sandbox_factory, timeout=120)

    result = asyncio.run(main())
    assert result.patch_report.test_files == [test_file] and result.patch_report.suspicious
    assert not result.resolved and result.tests_ran
