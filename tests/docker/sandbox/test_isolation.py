"""Isolation: what an agent does inside a sandbox stays there, and runaway commands are named.

Each bomb runs in its own small sandbox (tight pids, memory and disk limits, short timeouts: this
machine has 2 cores shared with other test runs) next to a bystander sandbox that must keep
answering.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import docker_client

pytestmark = pytest.mark.docker

SMALL = {"cpus": 0.5, "memory": "256m", "pids": 64, "disk": "200m", "disk_check_s": 0.5}

BOMBS = {
    # name: (command, timeout, expected limit)
    "fork_bomb": ("bomb(){ bomb | bomb & }; bomb; sleep 30", 4, "pids"),
    "memory_bomb": ("python3 -c 'x = []\nwhile True: x.append(bytearray(32 << 20))'", 30, "memory"),
    "busy_loop": ("while :; do :; done", 2, "timeout"),
    "endless_output": ("yes 'y' | head -c 200000000", 30, "output"),
    "disk_filler": ("dd if=/dev/zero of=/testbed/big bs=1M count=2000 status=none; sleep 10", 30, "disk"),
}


def _spec(image: str) -> SandboxSpec:
    return SandboxSpec(image=image, **SMALL)


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_runaway_command_is_contained_and_named(sandbox_factory, inflection_image, bomb):
    cmd, timeout, expected = BOMBS[bomb]

    async def main():
        victim = await sandbox_factory(_spec(inflection_image), bomb)
        bystander = await sandbox_factory(_spec(inflection_image), "bystander")
        try:
            started = time.monotonic()
            result = await victim.exec(cmd, timeout=timeout, output_limit=64 * 1024)
            elapsed = time.monotonic() - started
            after = await victim.exec("echo alive", timeout=10)  # the sandbox goes on (or says it died)
            other = await bystander.exec("echo fine", timeout=10)
            return result, elapsed, after, other
        finally:
            await victim.close()
            await bystander.close()

    result, elapsed, after, other = asyncio.run(main())
    assert result.limit == expected, (result.limit, result.note, result.output[-300:])
    assert elapsed < timeout + 15
    assert after.output.strip() == "alive" and other.output.strip() == "fine"
    if expected == "output":
        assert result.truncated and len(result.output) < 200 * 1024
    if expected in ("memory", "pids", "disk"):
        assert expected in result.note or "memory" in result.note or "processes" in result.note


def test_disk_filler_cannot_grow_far_past_the_limit(sandbox_factory, inflection_image):
    async def main():
        sb = await sandbox_factory(_spec(inflection_image))
        try:
            res = await sb.exec("for i in $(seq 100); do dd if=/dev/zero of=/testbed/f$i bs=1M count=50 "
                                "status=none; done", timeout=60)
            used = sb.disk_used
            freed = await sb.exec("rm -f /testbed/f*; echo done", timeout=30)
            return res, used, freed
        finally:
            await sb.close()

    res, used, freed = asyncio.run(main())
    assert res.limit == "disk" and "delete files" in res.note
    assert used < 2_000 * 1024 * 1024  # 200 MB limit; stopped long before 5 GB
    assert freed.output.strip().endswith("done"), freed.output


def test_background_processes_of_a_timed_out_command_are_killed(sandbox_factory, inflection_image):
    async def main():
        sb = await sandbox_factory(SandboxSpec(image=inflection_image))
        try:
            res = await sb.exec("(sleep 1000 &) ; nohup sleep 999 >/dev/null 2>&1 & setsid sleep 998 & sleep 30",
                                timeout=2)
            left = await sb.exec("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n' "
                                 "| grep -cE '^(1000|999|998)$' || true", timeout=10)
            return res, left
        finally:
            await sb.close()

    res, left = asyncio.run(main())
    assert res.timed_out and res.limit == "timeout"
    assert left.output.strip() == "0", left.output


def test_no_network(sandbox_factory, inflection_image):
    async def main():
        sb = await sandbox_factory(SandboxSpec(image=inflection_image))
        try:
            probe = ("import socket\ntry:\n    socket.create_connection(('1.1.1.1', 80), timeout=3)\n"
                     "    print('CONNECTED')\nexcept OSError as e:\n    print('REFUSED', e)\n")
            await sb.write_file("/tmp/probe.py", probe)
            conn = await sb.exec("python3 /tmp/probe.py", timeout=20)
            links = await sb.exec("ls /sys/class/net", timeout=10)
            return conn, links
        finally:
            await sb.close()

    conn, links = asyncio.run(main())
    assert conn.output.startswith("REFUSED"), conn.output
    assert links.output.split() == ["lo"]


def test_no_host_paths_no_docker_socket_no_capabilities_not_root(sandbox_factory, inflection_image):
    async def main():
        sb = await sandbox_factory(SandboxSpec(image=inflection_image))
        try:
            attrs = docker_client().api.inspect_container(sb.container.id)
            checks = await sb.exec(
                "id -u; grep CapEff /proc/self/status | awk '{print $2}'; "
                "ls /var/run/docker.sock /run/docker.sock 2>/dev/null | wc -l; "
                "su -c true root </dev/null >/dev/null 2>&1 && echo su-ok || echo su-denied; "
                "touch /etc/x 2>/dev/null && echo etc-writable || echo etc-readonly", timeout=20)
            return attrs, checks
        finally:
            await sb.close()

    attrs, checks = asyncio.run(main())
    # no host path but the fixed hosts file, read-only (envfarm.sandbox.no_network)
    assert [(m["Destination"], m["RW"]) for m in attrs["Mounts"]] in ([], [("/etc/hosts", False)])
    assert not attrs["HostConfig"].get("Binds")
    assert attrs["HostConfig"]["Privileged"] is False and attrs["HostConfig"]["NetworkMode"] == "none"
    uid, cap, sockets, su, etc = checks.output.split()
    assert uid != "0" and cap == "0000000000000000" and sockets == "0"
    assert su == "su-denied" and etc == "etc-readonly"
