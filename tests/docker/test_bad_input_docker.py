"""Bad input that needs a Docker engine to show: a missing image, non-UTF-8 output, a huge diff."""

from __future__ import annotations

import asyncio

import pytest

from envfarm.env.patch import PatchError, extract_patch
from envfarm.sandbox.base import ImageMissingError, SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox
from envfarm.tasks.setup import prepare_repository


@pytest.mark.docker
def test_missing_image_names_it_and_says_how_to_build_or_load_it(docker_engine):
    with pytest.raises(ImageMissingError) as err:
        asyncio.run(DockerSandbox.create(SandboxSpec(image="envfarm/nope-not-built:0")))
    msg = str(err.value)
    assert "envfarm/nope-not-built:0" in msg and "envfarm.sandbox.images build" in msg and "docker load" in msg


@pytest.mark.docker
def test_non_utf8_output_and_a_huge_agent_diff(fixture_tasks):
    """Non-UTF-8 bytes come back replaced, never raised; a 30 MB diff is refused before it is read."""
    task = fixture_tasks[0]

    async def main():
        sb = await DockerSandbox.create(SandboxSpec(image=task.image), run="tests", task="bad-input")
        try:
            await prepare_repository(sb, task)
            out = await sb.exec(r"printf 'ok \xff\xfe\xc3 end\n'")
            await sb.exec("head -c 30000000 /dev/zero | tr '\\0' 'x' | fold -w 100 > /testbed/huge.txt")
            with pytest.raises(PatchError, match="MB, over the"):
                await extract_patch(sb, task.base_commit)
            return out
        finally:
            await sb.close()

    out = asyncio.run(main())
    assert out.exit_code == 0 and out.output.startswith("ok ") and "\ufffd" in out.output and "end" in out.output
