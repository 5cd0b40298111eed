"""Docker tests' shared helpers (this folder is on the import path of its test modules: `import
recycling`), and the sandbox factory every isolation and integrity test runs with twice: on fresh
sandboxes and on recycled ones (a sandbox a dirty episode used, then reset: see
envfarm.sandbox.docker_recycle), since a warm pool hands out both."""

from __future__ import annotations

import pytest
from recycling import recycled_factory

from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox


async def fresh_factory(spec: SandboxSpec, task_id: str = "") -> DockerSandbox:
    return await DockerSandbox.create(spec, run="tests", task=task_id)


@pytest.fixture(scope="module", params=["fresh", "recycled"])
def sandbox_factory(request):
    return fresh_factory if request.param == "fresh" else recycled_factory
