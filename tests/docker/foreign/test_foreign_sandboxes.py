"""Agents on public-style images: a non-root user that can edit /testbed, the test environment
in its shell, and no way to see the commits after the base commit."""

from __future__ import annotations

import asyncio

import pytest
from foreign_rows import FIX_MESSAGE, FUTURE_MARKER

from envfarm.sandbox.backends import default_sandbox_factory
from envfarm.sandbox.docker_backend import docker_client
from envfarm.sandbox.foreign_images import ImageUnusableError, adapt_image
from envfarm.sandbox.image_supply import image_exists
from envfarm.tasks.sandbox_specs import agent_spec
from envfarm.tasks.setup import prepare_repository


def run_in_image(image: str, cmd: str) -> tuple[int, str]:
    container = docker_client().containers.run(image, ["bash", "-c", cmd], detach=True, user="root",
                                               network_mode="none")
    try:
        code = container.wait(timeout=60)["StatusCode"]
        return code, container.logs().decode()
    finally:
        container.remove(force=True)


def test_the_images_are_foreign(foreign_tasks):
    for task in foreign_tasks.values():
        code, out = run_in_image(task.image, "id agent; stat -c %U /testbed; git -C /testbed log --oneline | wc -l")
        lines = out.split()
        assert code == 0 and "no such user" in out and "root" in lines, out


async def agent_sandbox(task):
    sandbox = await default_sandbox_factory()(agent_spec(task), task.instance_id)
    await prepare_repository(sandbox, task)
    return sandbox


def test_agent_is_unprivileged_and_edits_testbed(foreign_tasks):
    async def main():
        out = {}
        for name, task in foreign_tasks.items():
            sandbox = await agent_sandbox(task)
            try:
                res = await sandbox.exec("id -un; echo '# edited' >> inflection/__init__.py && touch new_file.py "
                                         "&& git status --short")
                out[name] = res
            finally:
                await sandbox.close()
        return out

    for name, res in asyncio.run(main()).items():
        assert res.exit_code == 0, (name, res.output)
        lines = res.output.split("\n")
        assert lines[0] == "agent", (name, res.output)
        assert "M inflection/__init__.py" in res.output and "?? new_file.py" in res.output


def test_agent_shell_has_the_test_environment(foreign_tasks):
    async def main():
        sandbox = await agent_sandbox(foreign_tasks["conda"])
        try:
            first = await sandbox.exec("command -v python; echo $CONDA_DEFAULT_ENV")
            tests = await sandbox.exec("python -m pytest -q -p no:cacheprovider test_inflection.py 2>&1 | tail -1",
                                       timeout=300)
            return first, tests
        finally:
            await sandbox.close()

    first, tests = asyncio.run(main())
    assert first.output.split() == ["/opt/miniconda3/envs/testbed/bin/python", "testbed"], first.output
    assert "passed" in tests.output, tests.output


def test_no_git_command_reveals_the_later_commit(foreign_tasks):
    task = foreign_tasks["future"]
    probes = [
        "git log --all --format='%H %s'", "git reflog --all", "git tag -l", "git stash list",
        "git branch -a", "git for-each-ref", "git fsck --lost-found --unreachable --no-reflogs 2>&1",
        "git cat-file --batch-all-objects --batch | grep -a -c '' ",
        "cat .git/packed-refs .git/FETCH_HEAD .git/ORIG_HEAD 2>/dev/null; ls .git/logs 2>&1",
        "git worktree list; cat /opt/wt-fix/inflection/__init__.py 2>&1 | tail -3",
    ]

    async def main():
        sandbox = await agent_sandbox(task)
        try:
            outputs = [await sandbox.exec(p, timeout=120) for p in probes]
            everything = await sandbox.exec("git cat-file --batch-all-objects --batch", output_limit=64 << 20)
            history = await sandbox.exec("git log --format=%s")
            return outputs, everything, history
        finally:
            await sandbox.close()

    outputs, everything, history = asyncio.run(main())
    for probe, res in zip(probes, outputs, strict=True):
        assert FIX_MESSAGE not in res.output and "upstream-fix" not in res.output and "v9.9" not in res.output, \
            (probe, res.output)
        assert "stash" not in res.output.replace("git stash list", ""), (probe, res.output)
    # no object of the later commit, its tag or the stash: its code and message are nowhere
    assert FUTURE_MARKER not in everything.output and FIX_MESSAGE not in everything.output
    assert not everything.truncated
    assert history.output.split() == ["refactor", "import"], history.output  # the past stays


def test_unusable_and_absent_images_say_what_is_wrong():
    with pytest.raises(ImageUnusableError, match="no /testbed"):
        adapt_image("envfarm/rootfs:bookworm", "0" * 40)
    assert not image_exists("envfarm-test/never-built:1")
    with pytest.raises(Exception, match="docker pull envfarm-test/never-built:1"):
        adapt_image("envfarm-test/never-built:1", "0" * 40)


def test_adaptation_is_once_per_image(foreign_tasks):
    task = foreign_tasks["plain"]
    first = adapt_image(task.image, task.base_commit, "")
    labels = docker_client().images.get(first).labels
    assert first.startswith("envfarm-adapted/") and labels["envfarm.adapted-base"] == task.base_commit
    assert adapt_image(first, task.base_commit, "") == first  # an adapted image is used as it is
    assert adapt_image("envfarm/repo-inflection:0.5.1", "x" * 40) == "envfarm/repo-inflection:0.5.1"
