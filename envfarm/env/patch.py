"""Read the agent's change out of its sandbox as a patch that applies to the base commit.

`git add -A && git diff --cached --binary <base_commit>`: new, deleted and binary files
included, nothing excluded (the grader restores the test files itself). External diff drivers
and textconv are switched off, so settings the agent made in `.git/config` cannot shape the
patch. When the diff is not valid UTF-8 (a text file with Latin-1 bytes), every changed file is
diffed as binary instead, so the patch survives as text without losing a byte.

A diff over `MAX_PATCH_BYTES` (an agent that wrote a huge file into the repository) is refused
with a PatchError before it is read: it would cost the host its memory and the grader minutes.
"""

from __future__ import annotations

import shlex

from envfarm.sandbox.base import Sandbox
from envfarm.tasks.patch_guard import MAX_PATCH_BYTES

PATCH_OUT = "/tmp/.envfarm_agent.patch"
ATTRS = "/tmp/.envfarm_all_binary"
GIT = "git -c core.pager=cat -c diff.external= "


class PatchError(Exception):
    """The repository could not be diffed (the agent broke `.git`): the agent's failure, not ours."""


async def extract_patch(sandbox: Sandbox, base_commit: str, workdir: str = "/testbed") -> str:
    base = shlex.quote(base_commit)
    diff = f"diff --cached --binary --no-ext-diff --no-textconv --no-color {base}"
    res = await sandbox.exec(f"cd {shlex.quote(workdir)} && {GIT}add -A && {GIT}{diff} > {PATCH_OUT}", timeout=120)
    if res.exit_code != 0:
        raise PatchError(f"could not diff the repository against {base_commit[:12]}: {res.output[-500:]}")
    await _check_size(sandbox)
    data = await sandbox.read_file(PATCH_OUT)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    await sandbox.write_file(ATTRS, "* binary\n")
    res = await sandbox.exec(f"cd {shlex.quote(workdir)} && {GIT}-c core.attributesFile={ATTRS} {diff} > {PATCH_OUT}",
                             timeout=120)
    if res.exit_code != 0:
        raise PatchError(f"could not diff the repository as binary: {res.output[-500:]}")
    await _check_size(sandbox)
    return (await sandbox.read_file(PATCH_OUT)).decode("utf-8")


async def _check_size(sandbox: Sandbox) -> None:
    res = await sandbox.exec(f"stat -c %s {PATCH_OUT}", timeout=30)
    size = int(res.output.strip() or 0) if res.output.strip().isdigit() else 0
    if size > MAX_PATCH_BYTES:
        raise PatchError(f"the agent's diff is {size / 1e6:.1f} MB, over the {MAX_PATCH_BYTES / 1e6:.0f} MB limit "
                         "(a huge file written into the repository?): not graded")
