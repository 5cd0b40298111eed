"""Put a fresh sandbox into a task's starting state: the repository at `base_commit`."""

from __future__ import annotations

from envfarm.sandbox.base import Sandbox, SandboxError
from envfarm.tasks.schema import Task

FIXED_DATES = "GIT_AUTHOR_DATE='2000-01-02T00:00:00Z' GIT_COMMITTER_DATE='2000-01-02T00:00:00Z'"
BUG_PATCH_PATH = "/tmp/.envfarm_bug.diff"


class TaskSetupError(SandboxError):
    """The sandbox could not be brought to the task's base commit: an infrastructure fault."""


async def commit_bug(sandbox: Sandbox, bug_patch: str, workdir: str = "/testbed", *,
                     erase_history: bool = True) -> str:
    """Apply `bug_patch` to the clean repository and make it the one root commit; returns its hash.

    The commit has fixed author, committer and dates, so the hash is the same wherever it is made.
    With `erase_history` (every sandbox an agent sees) the repository is re-initialised, so no
    history or object in `.git` shows the clean code (an agent could otherwise read the answer
    from `git log -p`). Grading sandboxes are never seen by an agent: there the same commit is
    written from the index (`git apply --cached`, `git commit-tree`) without re-hashing every
    file, a tenth of the time; a repository whose index does not match falls back to re-init.
    The index's file stats are then refreshed (hashing, not writing objects), so that the eval
    script's `git checkout <base> -- tests` leaves unchanged test files alone and the byte code
    the image holds for them stays valid.
    """
    await sandbox.write_file(BUG_PATCH_PATH, bug_patch)
    reinit = (f"git apply {BUG_PATCH_PATH} && rm -rf .git && git init -q && git add -A && "
              f"{FIXED_DATES} git commit -q -m base")
    if erase_history:
        make = reinit
    else:
        from_index = (f"git apply --cached {BUG_PATCH_PATH} && git apply {BUG_PATCH_PATH} && "
                      f"git update-ref HEAD \"$({FIXED_DATES} git commit-tree \"$(git write-tree)\" -m base)\" && "
                      "{ git update-index -q --refresh >/dev/null || :; }")
        make = f"{{ {from_index}; }} || {{ {reinit}; }}"
    res = await sandbox.exec(
        f"cd {workdir} && {{ {make}; }} && rm -f {BUG_PATCH_PATH} && git rev-parse HEAD", timeout=120,
    )
    if res.exit_code != 0 or not res.output.strip():
        raise TaskSetupError(f"the bug patch did not apply in sandbox {sandbox.id}: {res.output[-500:]}")
    return res.output.strip().splitlines()[-1]


async def prepare_repository(sandbox: Sandbox, task: Task, workdir: str = "/testbed", *,
                             for_agent: bool = True) -> None:
    """Bring a fresh sandbox to `base_commit` (made from `bug_patch` when the task has one).

    `for_agent=False` (grading) keeps the clean code's objects in `.git`: see `commit_bug`.

    A hash mismatch means the image is not the one the task was made from. Simulated sandboxes
    (the sim backend) hold no repository: they pay the time of the set-up command and no more.
    """
    if getattr(sandbox, "simulated", False):
        await sandbox.exec(f"cd {workdir} && git checkout -q {task.base_commit}", timeout=60)
        return
    if task.bug_patch:
        head = await commit_bug(sandbox, task.bug_patch, workdir, erase_history=for_agent)
        ok = True
    else:
        res = await sandbox.exec(f"cd {workdir} && git checkout -q {task.base_commit} && "
                                 "git rev-parse HEAD", timeout=60)
        head = res.output.strip().splitlines()[-1] if res.output.strip() else ""
        ok = res.exit_code == 0
    if not ok or head != task.base_commit:
        raise TaskSetupError(
            f"task {task.instance_id}: could not reach base commit {task.base_commit[:12]} in image "
            f"{task.image} (got {head[:12] or 'nothing'}): is the image the one this task was made from?"
        )
