"""A sandbox without a network starts without the engine's network set-up, and is as cut off.

Its /etc/hosts is a read-only bind of a fixed file (envfarm.sandbox.no_network); where the
engine cannot bind this machine's files (a sidecar or remote engine) the process falls back to
the engine's `none` network, whose /etc/hosts the engine writes.
"""

from __future__ import annotations

import asyncio

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
        return out, docker_client().api.inspect_container(sb.container.id)
    finally:
        await sb.close()


@pytest.mark.parametrize("user", ["agent", None])  # None: the image's root, as a public image's grading
def test_no_network_but_loopback_and_localhost(inflection_image, user):
    out, attrs = asyncio.run(_probe(inflection_image, user))
    assert out == ["127.0.0.1", "loopback-ok", "no-route", "lo,", "hosts-readonly"], out
    assert attrs["Config"].get("NetworkDisabled") is True and attrs["HostConfig"]["NetworkMode"] == "none"
    assert [(m["Destination"], m["RW"]) for m in attrs["Mounts"]] == [("/etc/hosts", False)]
    assert open(attrs["Mounts"][0]["Source"]).read() == no_network.HOSTS


def test_an_engine_that_cannot_bind_this_machines_files_gets_the_none_network(inflection_image, monkeypatch):
    monkeypatch.setattr(no_network, "hosts_file", lambda: "/nonexistent/envfarm/hosts")  # not on the engine's machine
    monkeypatch.setattr(no_network, "_disabled_for_process", False)
    out, attrs = asyncio.run(_probe(inflection_image, "agent"))
    assert no_network._disabled_for_process is True
    assert out == ["127.0.0.1", "loopback-ok", "no-route", "lo,", "hosts-readonly"], out
    assert not attrs["Config"].get("NetworkDisabled") and attrs["HostConfig"]["NetworkMode"] == "none"
    assert attrs["Mounts"] == []
