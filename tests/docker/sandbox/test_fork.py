"""Sandbox.fork on Docker: children hold the parent's files and shell state, are isolated from
each other and from the parent, outlive it, are locked down like any sandbox, and leak nothing."""

from __future__ import annotations

import asyncio
import io
import tarfile

import pytest

from envfarm.sandbox.base import SandboxError, SandboxSpec
from envfarm.sandbox.docker_backend import LABEL_OWNER, LABEL_RUN, DockerSandbox, docker_client, list_containers
from envfarm.sandbox.docker_fork import LABEL_FORK_OF, Changes, receive

pytestmark = pytest.mark.docker

RUN = "tests-fork"

PARENT_WORK = (
    "set -e; cd /testbed; echo new > new.txt; echo more >> README.rst; rm setup.py; mkdir -p empty deep/er; "
    "printf '#!/bin/sh\\necho ran\\n' > deep/er/tool.sh; chmod 755 deep/er/tool.sh; ln -s /etc/passwd link; "
    "mkdir -p /tmp/scratch && echo t > /tmp/scratch/f; echo h > ~/.agent_note; "
    "rm -rf inflection && mkdir inflection && echo only > inflection/only.txt; "
    "head -c 3000000 /dev/urandom > blob.bin; sha256sum /testbed/blob.bin > /tmp/blob.sum; "
    "cd deep; export GREETING='hello world' MULTI=$'a\\nb'; unset LANG; umask 027"
)

CHECK = (
    "pwd; echo \"$GREETING\"; echo \"${MULTI//$'\\n'/|}\"; echo \"${LANG-unset}\"; umask; "
    "cat /testbed/new.txt; tail -1 /testbed/README.rst; test -e /testbed/setup.py || echo no-setup; "
    "test -d /testbed/empty && echo empty-dir; /testbed/deep/er/tool.sh; readlink /testbed/link; "
    "cat /tmp/scratch/f ~/.agent_note; ls /testbed/inflection; sha256sum -c --quiet /tmp/blob.sum && echo blob-ok; "
    "stat -c %U /testbed/new.txt; id -un; test \"$HOSTNAME\" = \"$(hostname)\" && echo own-hostname; "
    "ls -A ~ | grep -c envfarm-fork"
)

EXPECTED = ["/testbed/deep", "hello world", "a|b", "unset", "0027", "new", "more", "no-setup", "empty-dir", "ran",
            "/etc/passwd", "t", "h", "only.txt", "blob-ok", "agent", "agent", "own-hostname", "0"]


def run(coro):
    return asyncio.run(coro)


async def _closed(*sandboxes) -> None:
    await asyncio.gather(*(s.close() for s in sandboxes), return_exceptions=True)


def test_children_hold_the_parents_files_and_shell_state_and_are_isolated(inflection_image):
    async def main():
        parent = await DockerSandbox.create(SandboxSpec(image=inflection_image), run=RUN, task="t-fork")
        children = []
        try:
            assert (await parent.exec(PARENT_WORK)).exit_code == 0
            children = await parent.fork(3)
            assert len({c.id for c in children} | {parent.id}) == 4
            for child in children:
                res = await child.exec(CHECK)
                assert res.output.split("\n")[:len(EXPECTED)] == EXPECTED, res.output
            # siblings and the parent never see each other's changes
            await children[0].exec("echo mine > /testbed/new.txt; touch /tmp/only0")
            await parent.exec("echo parent-later > /testbed/new.txt")
            for other in children[1:]:
                res = await other.exec("cat /testbed/new.txt; test -e /tmp/only0 && echo leaked || echo clean")
                assert res.output.split() == ["new", "clean"]
            assert (await parent.exec("test -e /tmp/only0 && echo leaked || echo clean")).output.strip() == "clean"
            # closing the parent breaks no child
            await parent.close()
            for child in children:
                assert (await child.exec("cat /testbed/README.rst | tail -1; pwd")).output.split() == \
                    ["more", "/testbed/deep"]
        finally:
            await _closed(parent, *children)

    run(main())


def test_children_are_made_like_any_sandbox_and_leave_nothing(inflection_image):
    async def main():
        parent = await DockerSandbox.create(SandboxSpec(image=inflection_image, memory="1g", pids=256),
                                            run=RUN, task="t-fork-labels")
        children = []
        try:
            await parent.exec("echo x > /testbed/x.txt")
            children = await parent.fork(2)
            api = docker_client().api
            want = api.inspect_container(parent.container.id)
            for child in children:
                got = api.inspect_container(child.container.id)
                for key in ("Memory", "PidsLimit", "NanoCpus", "CapDrop", "SecurityOpt", "NetworkMode", "AutoRemove"):
                    assert got["HostConfig"][key] == want["HostConfig"][key], key
                assert got["Config"]["User"] == want["Config"]["User"] == "65534:65534"  # PID 1 as nobody
                labels = got["Config"]["Labels"]
                assert labels[LABEL_FORK_OF] == parent.container.id[:12]
                assert labels[LABEL_OWNER] == want["Config"]["Labels"][LABEL_OWNER]
                assert labels["envfarm.task"] == "t-fork-labels"
                res = await child.exec("id -u; ps -o user= -p 1 2>/dev/null || stat -c %u /proc/1")
                assert res.output.split()[0] == "1000" and res.output.split()[1] in ("nobody", "65534")
        finally:
            await _closed(parent, *children)
        ids = [parent.container.id] + [c.container.id for c in children]
        left = [c for c in list_containers(**{LABEL_RUN: RUN}) if c.id in ids]
        assert not left
        assert not docker_client().images.list(filters={"label": LABEL_FORK_OF})  # no image was committed

    run(main())


@pytest.mark.parametrize("hide", [
    "chmod 000 /testbed/test_inflection.py",  # unreadable: the archive leaves it out
    "rm /testbed/test_inflection.py && python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind("
    "'/testbed/test_inflection.py')\"",  # a socket: tar skips it
])
def test_a_changed_file_the_archive_lacks_is_never_the_images_in_a_child(inflection_image, hide):
    """A child must not fall back to its image's version of a file the parent changed (for a
    task's bug, the image's version is the clean code): it has the parent's version or none."""
    async def main():
        parent = await DockerSandbox.create(SandboxSpec(image=inflection_image), run=RUN)
        children = []
        try:
            assert (await parent.exec("echo CHANGED >> /testbed/test_inflection.py && " + hide)).exit_code == 0
            children = await parent.fork(2)
            for child in children:
                res = await child.exec("cat /testbed/test_inflection.py 2>&1 | tail -1; git -C /testbed status --short")
                assert "No such file" in res.output or "CHANGED" in res.output, res.output
                assert "def test" not in res.output
        finally:
            await _closed(parent, *children)

    run(main())


def test_paths_past_the_bounds_stop_the_fork_with_a_sandbox_error(inflection_image):
    """A chain of long folder names (the engine refuses it, and its paths would fill this
    process's memory) ends the fork with SandboxError, which a branched group answers with
    independent episodes; no child is left."""
    async def main():
        parent = await DockerSandbox.create(SandboxSpec(image=inflection_image), run=RUN)
        try:
            deep = "cd ~ && for i in $(seq 20); do d=$(printf 'd%.0s' $(seq 250)); mkdir $d && cd $d; done"
            assert (await parent.exec(deep)).exit_code == 0
            with pytest.raises(SandboxError, match="longer than"):
                await parent.fork(2)
        finally:
            await parent.close()
        left = [c for c in list_containers(**{LABEL_RUN: RUN}) if c.labels.get(LABEL_FORK_OF) == parent.id]
        assert not left

    run(main())


def test_an_archive_cannot_put_files_where_the_agent_could_not_write(inflection_image):
    """Whatever the parent's archive holds (an agent that owns its container can make it hold
    anything), a child unpacks it as the sandbox's user: /etc and the Python install stay as built."""

    def archive(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size, info.uid, info.gid, info.mode = len(data), 0, 0, 0o4755
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    async def main():
        child = await DockerSandbox.create(SandboxSpec(image=inflection_image), run=RUN)
        try:
            evil = archive({"etc/cron.d/evil": b"* * * * * root id\n", "usr/lib/python3/dist-packages/evil.pth": b"x",
                            "testbed/ok.txt": b"ok"})
            with pytest.raises(SandboxError, match="unpacking"):
                await receive(child, Changes(copy=["/testbed/ok.txt"]), evil, "true")
            res = await child.exec("ls /etc/cron.d/evil /usr/lib/python3/dist-packages/evil.pth 2>&1; "
                                   "stat -c %U /testbed/ok.txt; ls -A ~ | grep -c envfarm-fork")
            assert res.output.count("No such file") == 2  # nothing where the agent could not write
            assert res.output.split()[-2:] == ["agent", "0"]  # never root's; the inbox is gone
        finally:
            await child.close()

    run(main())


def test_bad_fork_counts_are_refused(inflection_image):
    async def main():
        parent = await DockerSandbox.create(SandboxSpec(image=inflection_image), run=RUN)
        try:
            for n in (0, -1, 1.5):
                with pytest.raises(ValueError, match="positive whole number"):
                    await parent.fork(n)  # type: ignore[arg-type]
        finally:
            await parent.close()
        with pytest.raises(SandboxError, match="closed"):
            await parent.fork(1)

    run(main())
