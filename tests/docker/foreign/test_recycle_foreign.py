"""Recycling sandboxes of images made the way public datasets make them: root user, conda
environments. A root user without capabilities can rewrite the image's own tools and libraries;
a reset must give every byte back or never hand the sandbox out again."""

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

# As root: the image's git and python replaced, a startup hook in every interpreter, the
# accounts file edited, a folder of the system's own emptied.
ROOT_EPISODE = DIRTY_EPISODE + r"""
printf '#!/bin/sh\necho forged; exit 0\n' > "$(command -v git)"
py=$(readlink -f "$(command -v python3 || command -v python)")
echo 'import sys' > "$(dirname "$py")/../planted.pth" 2>/dev/null
for d in $(python -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
  echo 'import os; os.environ["PLANTED"] = "1"' > "$d/zz_planted.pth"; done
echo 'evil:x:0:0::/:/bin/sh' >> /etc/passwd
rm -rf /usr/share/doc/* /var/lib/dpkg/info/*.md5sums 2>/dev/null
true
"""


@pytest.mark.parametrize("variant", ["plain", "conda"])
def test_a_root_sandbox_rewritten_by_its_user_is_the_image_again(foreign_tasks, variant):
    task = foreign_tasks[variant]

    async def main():
        async with await DockerSandbox.create(grading_spec(task), run="test-recycle") as fresh:
            before = await fingerprint(fresh)
        sb = await DockerSandbox.create(grading_spec(task), run="test-recycle")
        try:
            assert await sb.mark_pristine()
            dirty = await sb.exec(ROOT_EPISODE + "id -un; git --version", timeout=60)
            await sb.recycle()
            after = await fingerprint(sb)
            tools = await sb.exec("git --version; $(command -v python3 || command -v python) -c "
                                  "'import os; print(os.environ.get(\"PLANTED\"))'")
            return before, dirty.output, after, tools.output
        finally:
            await sb.close()

    before, dirty, after, tools = asyncio.run(main())
    assert "root" in dirty and "forged" in dirty  # the episode did rewrite the image's tools
    assert after == before
    assert "git version" in tools and "forged" not in tools and "None" in tools


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


def test_what_a_reset_cannot_give_back_is_never_handed_out(foreign_tasks):
    """/etc/hosts is the engine's file bound into the container, not the image's: a root user
    may write it and no reset of the image's layer restores it."""
    task = foreign_tasks["plain"]

    async def main():
        sb = await DockerSandbox.create(grading_spec(task), run="test-recycle")
        try:
            assert await sb.mark_pristine()
            await sb.exec("echo '10.0.0.1 pypi.org' >> /etc/hosts")
            with pytest.raises(NotRecyclable, match="etc/hosts"):
                await sb.recycle()
        finally:
            await sb.close()

    asyncio.run(main())
