"""A sandbox without a network starts without the engine's network set-up, and is as cut off.

Its /etc/hosts is a read-only bind of a fixed file (envfarm.sandbox.no_network); where the
engine cannot bind this machine's files (a sidecar or remote engine) the process falls back to
the engine's `none` network, whose /etc/hosts the engine writes.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from envfarm.sandbox import no_network
from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox, docker_client

pytestmark = pytest.mark.docker

PROBE = (
    "python3 -c 'import socket; print(socket.gethostbyname(\"localhost\"))'; "
    "python3 -c 'import socket; s = socket.create_server((\"localhost\", 0)); "
    "socket.create_connection(s.getsockname()).close(); print(\"loopback-ok\")'; "
    "timeout 5 python3 -c 'import socket; socket.create_connection((\"1.1.1.1\", 80), timeout=3)' "
    "2>/dev/null && echo reached || echo no-route; "
    "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ,; echo; "
    "{ echo '6.6.6.6 localhost' >> /etc/hosts; } 2>/dev/null && echo hosts-written || echo hosts-readonly"
)


async def _probe(image: str, user: str | None) -> tuple[list[str], dict]:
    sb = await DockerSandbox.create(SandboxSpec(image=image, user=user), run="tests")
    try:
        out = (await sb.exec(PROBE, timeout=30)).output.split()
        attrs = docker_client().api.inspect_container(sb.container.id)
        if attrs["Mounts"]:  # the bound file's bytes while the sandbox lives
            attrs["bound"] = open(attrs["Mounts"][0]["Source"]).read()
        return out, attrs
    finally:
        await sb.close()


@pytest.mark.parametrize("user", ["agent", None])  # None: the image's root, as a public image's grading
def test_no_network_but_loopback_and_localhost(inflection_image, user):
    out, attrs = asyncio.run(_probe(inflection_image, user))
    assert out == ["127.0.0.1", "loopback-ok", "no-route", "lo,", "hosts-readonly"], out
    assert attrs["Config"].get("NetworkDisabled") is True and attrs["HostConfig"]["NetworkMode"] == "none"
    assert [(m["Destination"], m["RW"]) for m in attrs["Mounts"]] == [("/etc/hosts", False)]
    assert attrs["bound"] == no_network.HOSTS
    assert not os.path.exists(attrs["Mounts"][0]["Source"]), "its hosts file outlived the sandbox"


def test_an_engine_that_cannot_bind_this_machines_files_gets_the_none_network(inflection_image, monkeypatch):
    # a path that is not on the engine's machine
    monkeypatch.setattr(no_network, "hosts_file", lambda name: "/nonexistent/envfarm/hosts")
    monkeypatch.setattr(no_network, "_disabled_for_process", False)
    out, attrs = asyncio.run(_probe(inflection_image, "agent"))
    assert no_network._disabled_for_process is True
    assert out == ["127.0.0.1", "loopback-ok", "no-route", "lo,", "hosts-readonly"], out
    assert not attrs["Config"].get("NetworkDisabled") and attrs["HostConfig"]["NetworkMode"] == "none"
    assert attrs["Mounts"] == []


# A lock on a byte range the sandbox holds on its /etc/hosts (one process, kept open), and a
# look from another sandbox at whether anyone holds one there.
HOLD_LOCK = ("nohup python3 -c 'import fcntl, os, struct, time; fd = os.open(\"/etc/hosts\", os.O_RDONLY); "
             "fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack(\"hhqqi\", fcntl.F_RDLCK, 0, 1000042, 1, 0)); "
             "time.sleep(120)' >/dev/null 2>&1 & sleep 1; echo held")
SEE_LOCK = ("python3 -c 'import fcntl, os, struct; fd = os.open(\"/etc/hosts\", os.O_RDONLY); "
            "r = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(\"hhqqi\", fcntl.F_WRLCK, 0, 1000042, 1, 0)); "
            "print(\"locked\" if struct.unpack(\"hhqqi\", r)[0] != fcntl.F_UNLCK else \"free\")'")
# a root user without capabilities owns what the host's root owns: a write lease on the file,
# held through every break (each holds a reader up to the kernel's lease-break-time, 45 s here)
HOLD_LEASE = ("nohup python3 -c 'import fcntl, os, signal, time\nsignal.signal(signal.SIGIO, signal.SIG_IGN)\n"
              "while True:\n    fd = os.open(\"/etc/hosts\", os.O_RDONLY)\n"
              "    try:\n        fcntl.fcntl(fd, 1024, fcntl.F_WRLCK)\n    except OSError as e:\n"
              "        print(e); break\n    time.sleep(60); os.close(fd)' >/tmp/lease.out 2>&1 & sleep 1; echo started")


def test_concurrent_sandboxes_share_no_hosts_file(inflection_image):
    """Locks and watches on a file two sandboxes share pass bytes between them: each has its own."""
    async def main():
        spec = SandboxSpec(image=inflection_image)
        a, b = await asyncio.gather(DockerSandbox.create(spec, run="tests"), DockerSandbox.create(spec, run="tests"))
        try:
            held = (await a.exec(HOLD_LOCK, timeout=30)).output.strip()
            seen_by_b = (await b.exec(SEE_LOCK, timeout=30)).output.strip()
            seen_by_a_sibling = (await a.exec(SEE_LOCK, timeout=30)).output.strip()  # same file, other process
            sources = [docker_client().api.inspect_container(s.container.id)["Mounts"][0]["Source"] for s in (a, b)]
            return held, seen_by_b, seen_by_a_sibling, sources
        finally:
            await asyncio.gather(a.close(), b.close())

    held, seen_by_b, seen_by_a_sibling, sources = asyncio.run(main())
    assert held == "held" and seen_by_a_sibling == "locked"  # the probe sees a lock where there is one
    assert seen_by_b == "free"
    assert sources[0] != sources[1]


def test_a_root_sandboxs_lease_on_its_hosts_file_stalls_no_other_sandbox(inflection_image):
    async def main():
        root = await DockerSandbox.create(SandboxSpec(image=inflection_image, user="root"), run="tests")
        try:
            started = (await root.exec(HOLD_LEASE, timeout=30)).output.strip()
            other = await asyncio.wait_for(DockerSandbox.create(SandboxSpec(image=inflection_image), run="tests"), 30)
            try:
                hosts = await other.exec("getent hosts localhost", timeout=20)
            finally:
                await other.close()
            return started, hosts
        finally:
            await root.close()

    started, hosts = asyncio.run(main())
    assert started == "started"
    assert hosts.exit_code == 0 and "localhost" in hosts.output and not hosts.limit
