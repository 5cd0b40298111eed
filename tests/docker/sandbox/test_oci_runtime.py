"""The engine's OCI runtime is configurable (crun on a cgroup v2 node): the backend's, or a sandbox's own.

This engine's runtimes are runc under its two names (Debian's crun refuses cgroup v1 hybrid
machines), so the named one here is runc's other name: what is checked is that the name reaches
the engine, and that one it lacks is refused naming what it has.
"""

from __future__ import annotations

import asyncio

import pytest

from envfarm.sandbox.backends import DockerBackendConfig, make_backend
from envfarm.sandbox.base import SandboxError, SandboxSpec
from envfarm.sandbox.docker_backend import docker_client

pytestmark = pytest.mark.docker

OTHER = "io.containerd.runc.v2"


def test_the_backends_runtime_reaches_the_engine(inflection_image):
    assert OTHER in docker_client().info()["Runtimes"]

    async def main():
        backend = make_backend(DockerBackendConfig(runtime=OTHER))
        sb = await backend.create(SandboxSpec(image=inflection_image), run="tests")
        try:
            out = (await sb.exec("echo ran", timeout=30)).output.strip()
            return out, docker_client().api.inspect_container(sb.container.id)["HostConfig"]["Runtime"]
        finally:
            await sb.close()

    assert asyncio.run(main()) == ("ran", OTHER)


def test_a_runtime_the_engine_lacks_is_refused_naming_what_it_has(inflection_image):
    async def main():
        backend = make_backend(DockerBackendConfig(runtime="no-such-runtime"))
        await backend.create(SandboxSpec(image=inflection_image), run="tests")

    with pytest.raises(SandboxError, match=r"no OCI runtime 'no-such-runtime' \(it has: .*runc") as err:
        asyncio.run(main())
    assert "daemon.json" in str(err.value)
