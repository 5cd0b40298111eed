"""The local backend for real, without Docker: shell, files, grading, patch extraction, an episode.

Needs the inflection sdist in envfarm's cache (as the image build does) and a python3 on the host.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from envfarm.env import CodingEnv
from envfarm.env.patch import extract_patch
from envfarm.policy.scripted import ScriptedPolicy
from envfarm.rollout import run_episode
from envfarm.sandbox.backends import LocalBackendConfig, make_backend
from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.local_backend import KILL_GUARD, LocalBackend
from envfarm.tasks import load
from envfarm.tasks.grading import grade
from envfarm.tasks.sandbox_specs import agent_spec
from envfarm.tasks.setup import prepare_repository

IMAGE = "envfarm/repo-inflection:0.5.1"
IMAGE_COMMIT = "71c94a4e4a34621fa3a22be17674ae98edcd4318"  # `git rev-parse HEAD` in the image


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    backend = make_backend(LocalBackendConfig(allow_unisolated=True))
    backend.prepare(IMAGE)
    return backend


@pytest.fixture(scope="module")
def task():
    return load("builtin:inflection")[0]


def test_the_tree_is_the_images_commit_and_tasks_reach_their_base_commit(backend, task):
    assert backend.base_commit(IMAGE) == IMAGE_COMMIT

    async def main():
        sandbox = await backend.create(agent_spec(task))
        try:
            return await prepare_repository(sandbox, task)
        finally:
            await sandbox.close()

    assert asyncio.run(main()) == task.base_commit


def test_the_shell_persists_cwd_and_env_and_files_go_both_ways(backend):
    async def main():
        sandbox = await backend.create(SandboxSpec(image=IMAGE))
        try:
            first = await sandbox.exec("pwd && cd inflection && export EF_X=42")
            second = await sandbox.exec("pwd; echo $EF_X; echo $TMPDIR; python3 -m pytest --version")
            await sandbox.write_file("/testbed/notes/a.txt", "hello\n")
            await sandbox.write_file("/tmp/b.txt", b"\x00bytes")
            seen = await sandbox.exec("cat /testbed/notes/a.txt; ls /tmp")
            read = await sandbox.read_file("notes/a.txt"), await sandbox.read_file("/tmp/b.txt")
            with pytest.raises(FileNotFoundError):
                await sandbox.read_file("/testbed/nope")
            with pytest.raises(IsADirectoryError):
                await sandbox.read_file("/testbed/notes")
            slow = await sandbox.exec("sleep 30", timeout=1)
            after = await sandbox.exec("pwd")
            root = sandbox.root
            return first, second, seen, read, slow, after, root
        finally:
            await sandbox.close()

    first, second, seen, read, slow, after, root = asyncio.run(main())
    assert first.output.strip() == "/testbed" and first.ok
    lines = second.output.splitlines()
    assert lines[:3] == ["/testbed/inflection", "42", "/tmp"] and lines[3].startswith("pytest ")
    assert seen.output.split() == ["hello", "b.txt"]
    assert read == (b"hello\n", b"\x00bytes")
    assert slow.timed_out and slow.limit == "timeout"
    assert after.output.strip() == "/testbed/inflection"
    assert not root.exists()  # closing removes the copy


def test_gold_resolves_and_empty_does_not(backend, task):
    factory = backend.factory(run="test-local")

    async def main():
        return await asyncio.gather(grade(task, task.patch, factory), grade(task, "", factory))

    gold, empty = asyncio.run(main())
    assert gold.resolved and gold.error_kind is None, gold.error
    assert not empty.resolved and empty.tests_ran


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_extract_patch_stops_the_sandbox_and_nothing_else(backend, task):
    outside = subprocess.Popen(["sleep", "60"])

    async def main():
        mine, other = await backend.create(agent_spec(task)), await backend.create(agent_spec(task))
        try:
            base = await prepare_repository(mine, task)
            await mine.write_file("/testbed/inflection/__init__.py",
                                  (await mine.read_file("inflection/__init__.py")) + b"# changed\n")
            background = int((await mine.exec("sleep 60 >/dev/null 2>&1 & echo $!")).output.strip())
            theirs = int((await other.exec("sleep 60 >/dev/null 2>&1 & echo $!")).output.strip())
            patch = await extract_patch(mine, base)
            await asyncio.sleep(0.2)
            state = _alive(background), _alive(theirs), other.is_alive(), (await other.exec("echo up")).output
            again = await mine.exec("echo back")  # the next command starts a new session
            return patch, state, again
        finally:
            await mine.close()
            await other.close()

    try:
        patch, state, again = asyncio.run(main())
        assert _alive(outside.pid)
    finally:
        outside.kill()
        outside.wait()
    assert "+# changed" in patch and patch.startswith("diff --git a/inflection/__init__.py")
    assert state == (False, True, True, "up\n")
    assert again.output == "back\n" and "new shell session" in again.note


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to try the guard as a spare uid (harmless if it failed)")
def test_the_kill_guard_of_non_root_sandboxes_ends_only_marked_processes(backend):
    """Not root, a sandbox's bash `kill -9 -1` must spare the user's other processes. Tried as a
    spare uid, so that a broken guard could only kill that uid's own processes."""
    uid, fd = backend.allocate_uid()
    guard = backend.dir / f"guard-test-{os.getpid()}.sh"  # a folder the spare uid can read
    guard.write_text(KILL_GUARD)
    guard.chmod(0o644)
    as_uid = {"user": uid, "group": uid, "extra_groups": [], "start_new_session": True}
    try:
        marked = subprocess.Popen(["sleep", "60"], env={"ENVFARM_SANDBOX": "sb1"}, **as_uid)
        unmarked = subprocess.Popen(["sleep", "60"], env={"ENVFARM_SANDBOX": "sb2"}, **as_uid)
        script = "type -t kill; kill -9 -1; kill -l 9; echo done"
        res = subprocess.run(["/bin/bash", "--noprofile", "--norc", "-c", script],
                             env={"BASH_ENV": str(guard), "ENVFARM_SANDBOX": "sb1", "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, timeout=30, **as_uid)
        assert res.stdout.split() == ["function", "KILL", "done"], res.stderr
        assert marked.wait(5) == -9
        assert _alive(unmarked.pid)
    finally:
        for proc in (marked, unmarked):
            proc.kill()
            proc.wait()
        os.close(fd)
        guard.unlink()


def test_an_episode_of_the_scripted_policy_resolves(backend, task):
    env = CodingEnv([task], sandbox_factory=backend.factory(run="test-local"), run="test-local")
    traj = asyncio.run(run_episode(env, ScriptedPolicy(), task))
    assert traj.resolved, (traj.error, traj.grade)
    assert sys.version_info >= (3, 11)
