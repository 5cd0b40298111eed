"""Grading through swebench's functions on real fixture tasks in real sandboxes."""

from __future__ import annotations

import asyncio

import pytest

from envfarm.errors import ErrorKind
from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox
from envfarm.tasks.grading import grade
from envfarm.tasks.setup import prepare_repository

pytestmark = pytest.mark.docker


async def _factory(spec: SandboxSpec, task_id: str) -> DockerSandbox:
    return await DockerSandbox.create(spec, run="tests", task=task_id)


def _grade(task, patch):
    return asyncio.run(grade(task, patch, _factory))


def test_there_are_at_least_three_fixture_tasks(fixture_tasks):
    assert len(fixture_tasks) >= 3
    for task in fixture_tasks:
        assert task.FAIL_TO_PASS and task.PASS_TO_PASS and task.bug_patch and task.patch


def test_gold_patch_resolves_every_fixture_task(fixture_tasks):
    for task in fixture_tasks:
        result = _grade(task, task.patch)
        assert result.resolved, (task.instance_id, result.status, result.error, result.log_tail[-800:])
        assert result.fail_to_pass == 1.0 and result.pass_to_pass == 1.0
        assert result.error_kind is None and result.tests_ran
        assert all(result.tests[t] == "PASSED" for t in task.FAIL_TO_PASS)


def test_empty_patch_does_not_resolve(fixture_tasks):
    task = fixture_tasks[0]
    result = _grade(task, "")
    assert not result.resolved and result.error_kind is None and result.tests_ran
    assert result.fail_to_pass == 0.0
    assert result.pass_to_pass == 1.0
    assert all(result.tests[t] == "FAILED" for t in task.FAIL_TO_PASS)


def test_patch_that_does_not_apply_is_reported_as_such(fixture_tasks):
    task = fixture_tasks[0]
    bad = task.patch.replace("@@ -", "@@ -9", 1).replace("number", "nomber")
    result = _grade(task, bad)
    assert result.error_kind == ErrorKind.PATCH_FAILED
    assert "did not apply" in result.error
    assert not result.resolved


def test_editing_the_tests_to_pass_does_not_resolve(fixture_tasks):
    """A patch that deletes the failing tests' assertions is undone by the eval script's reset."""
    task = fixture_tasks[0]
    async def cheat_patch() -> str:
        sb = await DockerSandbox.create(SandboxSpec(image=task.image), run="tests")
        try:
            await prepare_repository(sb, task)
            # make every test trivially pass by rewriting the test file
            await sb.exec("cd /testbed && python3 - <<'EOF'\nimport re\n"
                          "p='test_inflection.py'; s=open(p).read()\n"
                          "s=re.sub(r'^(\\s+)assert .*$', r'\\1assert True', s, flags=re.M)\n"
                          "open(p,'w').write(s)\nEOF")
            res = await sb.exec(f"cd /testbed && git diff {task.base_commit}")
            return res.output
        finally:
            await sb.close()

    patch = asyncio.run(cheat_patch())
    assert "assert True" in patch  # the patch really edits the tests
    result = _grade(task, patch)
    assert result.error_kind is None and result.tests_ran
    assert not result.resolved
    assert result.fail_to_pass == 0.0


def test_infrastructure_failure_is_not_a_wrong_fix(fixture_tasks):
    async def broken_factory(spec, task_id):
        from envfarm.sandbox.base import SandboxError

        raise SandboxError("engine went away")

    result = asyncio.run(grade(fixture_tasks[0], fixture_tasks[0].patch, broken_factory))
    assert result.error_kind == ErrorKind.INFRASTRUCTURE and result.infrastructure_failure
    assert not result.resolved


def test_eval_timeout_is_reported(fixture_tasks):
    task = fixture_tasks[0].model_copy(update={"eval_script": "#!/bin/bash\nsleep 30\n"})
    result = asyncio.run(grade(task, "", _factory, timeout=1))
    assert result.error_kind == ErrorKind.TIMEOUT and not result.resolved


def test_agent_cannot_read_the_fix_from_git_history(fixture_tasks):
    task = fixture_tasks[0]

    async def main():
        sb = await DockerSandbox.create(SandboxSpec(image=task.image), run="tests")
        try:
            await prepare_repository(sb, task)
            log = await sb.exec("cd /testbed && git log --oneline | wc -l; git count-objects -v | grep -c .")
            objs = await sb.exec("cd /testbed && git cat-file --batch-all-objects --batch-check | wc -l; "
                                 "git ls-files | wc -l")
            return log.output.split(), objs.output.split()
        finally:
            await sb.close()

    log, (objects, files) = asyncio.run(main())
    assert log[0] == "1"
    # only the buggy tree: one commit, its trees and one blob per file, nothing of the clean code
    assert int(objects) <= int(files) + 20


def test_fake_passed_lines_printed_by_the_code_do_not_resolve(fixture_tasks):
    """Code that prints 'PASSED <test>' for every failing test at exit earns nothing, and says why."""
    task = fixture_tasks[0]
    lines = "\\n".join(f"PASSED {t}" for t in task.FAIL_TO_PASS)

    async def forged_patch() -> str:
        sb = await DockerSandbox.create(SandboxSpec(image=task.image), run="tests")
        try:
            await prepare_repository(sb, task)
            await sb.exec("cd /testbed && cat >> inflection/__init__.py <<'EOF'\nimport atexit\n"
                          f"atexit.register(lambda: print('\\n{lines}'))\nEOF")
            return (await sb.exec(f"cd /testbed && git diff {task.base_commit}")).output
        finally:
            await sb.close()

    patch = asyncio.run(forged_patch())
    assert "atexit" in patch
    result = _grade(task, patch)
    assert not result.resolved
    assert result.error_kind == "tampering" and result.tampering  # reward 0, not masked, recorded


def test_grading_says_where_its_time_went(fixture_tasks):
    result = _grade(fixture_tasks[0], fixture_tasks[0].patch)
    assert result.resolved
    assert list(result.phases) == ["sandbox", "prepare", "patch", "tests", "parse", "close"]
    assert all(v >= 0 for v in result.phases.values())
    assert sum(result.phases.values()) <= result.seconds + 1e-3


def test_grading_sandbox_reaches_the_agents_base_commit_without_reinitialising(fixture_tasks):
    """Both ways give the same commit and leave nothing of the clean code in `.git` (code under
    test could apply it while the tests run); only the agent's way rewrites every object."""
    task = fixture_tasks[0]

    async def inspect(for_agent: bool) -> tuple[str, str, str, int]:
        sb = await DockerSandbox.create(SandboxSpec(image=task.image), run="tests")
        try:
            clean = (await sb.exec("cd /testbed && git rev-parse HEAD && touch /tmp/.started")).output.split()[0]
            await prepare_repository(sb, task, for_agent=for_agent)  # raises on a different hash
            res = await sb.exec(f"cd /testbed && git status --porcelain | wc -l; "
                                f"git cat-file -e {clean} 2>/dev/null && echo clean-kept || echo clean-gone; "
                                f"git log -g --format=%H 2>/dev/null | grep -c {clean}; "
                                "find .git/objects -type f ! -newer /tmp/.started | wc -l")
            dirty, clean_state, reflog, old_objects = res.output.split()
            return dirty, clean_state, reflog, int(old_objects)
        finally:
            await sb.close()

    async def main():
        return await asyncio.gather(inspect(True), inspect(False))

    agent, grading = asyncio.run(main())
    assert agent[:3] == grading[:3] == ("0", "clean-gone", "0")
    assert agent[3] == 0 and grading[3] > 0  # the grading way kept the image's unchanged objects


def test_images_carry_the_byte_code_grading_reads_and_none_of_the_source(fixture_tasks):
    """The eval runs with a byte-code prefix; the image compiled pytest and the test modules as
    pytest rewrites them into it, never the repository's source (agents start from this image:
    the clean code's byte code would be the fix), and the eval script's reset of the test files
    leaves unchanged ones alone (so their byte code stays valid)."""
    from envfarm.tasks.grading import PYCACHE_PREFIX

    task = fixture_tasks[0]
    probe = ("import importlib.util, os, _pytest, inflection; "
             "print(*(os.path.exists(importlib.util.cache_from_source(m.__file__)) for m in (_pytest, inflection)))")
    test_file = task.restored_files[0]

    async def main():
        sb = await DockerSandbox.create(SandboxSpec(image=task.image), run="tests")
        try:
            await prepare_repository(sb, task, for_agent=False)
            found = (await sb.exec(f"cd /testbed && PYTHONPYCACHEPREFIX={PYCACHE_PREFIX} python3 -c '{probe}'")).output
            listing = (await sb.exec(f"find {PYCACHE_PREFIX}/testbed -type f")).output.split()
            before = (await sb.exec(f"cd /testbed && stat -c %Y {test_file}")).output
            await sb.exec(f"sleep 1.1; cd /testbed && git checkout -q {task.base_commit} -- {test_file}")
            after = (await sb.exec(f"cd /testbed && stat -c %Y {test_file}")).output
            return found.split(), listing, before, after
        finally:
            await sb.close()

    found, listing, before, after = asyncio.run(main())
    assert found == ["True", "False"]  # pytest's byte code is there, the package's is not
    assert listing and all("-pytest-" in f and f"/testbed/{test_file.removesuffix('.py')}" in f for f in listing)
    assert before == after


def test_grading_base_commit_falls_back_to_reinitialising_when_the_hash_differs(fixture_tasks):
    """A fast commit that does not give the expected hash (a patch git's index sees differently,
    e.g. one adding an ignored file) is redone the agent's way from the patched files."""
    from envfarm.tasks.setup import commit_bug

    task = fixture_tasks[0]

    async def main():
        sb = await DockerSandbox.create(SandboxSpec(image=task.image), run="tests")
        try:
            await sb.exec("touch /tmp/.started")
            head = await commit_bug(sb, task.bug_patch, erase_history=False, expected="0" * 40)
            old = (await sb.exec("cd /testbed && find .git/objects -type f ! -newer /tmp/.started | wc -l")).output
            return head, int(old)
        finally:
            await sb.close()

    head, old_objects = asyncio.run(main())
    assert head == task.base_commit  # re-initialised from the patched files: the same tree
    assert old_objects == 0
