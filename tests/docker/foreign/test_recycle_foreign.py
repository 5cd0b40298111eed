"""Recycling sandboxes of images made the way public datasets make them: root user, conda
environments. The agent's sandbox (its own user) is recycled through the task's set-up; a
sandbox whose user is root never is."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recycling import DIRTY_EPISODE, fingerprint  # noqa: E402

from envfarm.sandbox.docker_backend import DockerSandbox  # noqa: E402
from envfarm.sandbox.docker_recycle import NotRecyclable  # noqa: E402
from envfarm.tasks.sandbox_specs import agent_spec, grading_spec  # noqa: E402
from envfarm.tasks.setup import prepare_repository  # noqa: E402

pytestmark = pytest.mark.docker

@pytest.mark.parametrize("variant", ["plain", "conda"])
def test_a_root_sandbox_is_never_recycled(foreign_tasks, variant):
    """A root user without capabilities still writes what no reset of the image's layer verifies
    (the container's top folder, the engine's bound files' modes, /dev's links): the image's own
    user of a public image (root: grading) gets a fresh sandbox every time."""
    task = foreign_tasks[variant]

    async def main():
        sb = await DockerSandbox.create(grading_spec(task), run="test-recycle")
        try:
            user = (await sb.exec("id -un")).output.strip()
            marked = await sb.mark_pristine()
            with pytest.raises(NotRecyclable):
                await sb.recycle()
            return user, marked
        finally:
            await sb.close()

    user, marked = asyncio.run(main())
    assert user == "root" and not marked


def test_an_agent_sandbox_of_a_foreign_image_is_recycled_through_its_set_up(foreign_tasks):
    task = foreign_tasks["conda"]

    async def main():
        async with await DockerSandbox.create(agent_spec(task), run="test-recycle") as fresh:
            before = await fingerprint(fresh)
        sb = await DockerSandbox.create(agent_spec(task), run="test-recycle")
        try:
            assert await sb.mark_pristine()
            head = await prepare_repository(sb, task)
            await sb.exec(DIRTY_EPISODE, timeout=60)
            await sb.recycle()
            return before, await fingerprint(sb), head, await prepare_repository(sb, task)
        finally:
            await sb.close()

    before, after, head, again = asyncio.run(main())
    assert after == before and head == again
