"""Put a fresh sandbox into a task's starting state: the repository at `base_commit`."""

from __future__ import annotations

import shlex

from envfarm.sandbox.base import Sandbox, SandboxError
from envfarm.tasks.schema import Task

FIXED_DATES = "GIT_AUTHOR_DATE='2000-01-02T00:00:00Z' GIT_COMMITTER_DATE='2000-01-02T00:00:00Z'"
BUG_PATCH_PATH = "/tmp/.envfarm_bug.diff"

# Applies the bug patch so that no file's metadata says where it is (agent sandboxes only).
# `git apply` leaves the changed files (and their folders) with a fresh mtime and ctime, a new
# inode, and on overlayfs first in their folder's listing (the one entry in the upper layer).
# So: the mtime of every path the patch touches, and of the folders above it, is kept aside
# (`touch -r` onto a scratch file) and put back after the patch; then the whole work tree but
# .git is rewritten from one tar stream in name order, which gives every file and folder a new
# inode and ctime in an order that depends on the paths alone, and every folder an upper-layer
# listing of its own. Modes are the patch's own (bug patches carry no mode change).
APPLY_QUIETLY = r"""ef_m=$(mktemp -d /tmp/.envfarm_meta.XXXXXX) && git apply --numstat -z "$1" >"$ef_m/list" && {
  ef_n=0
  while IFS= read -r -d '' ef_l; do
    ef_p=${ef_l#*$'\t'}; ef_p=${ef_p#*$'\t'}
    while [ -n "$ef_p" ] && [ "$ef_p" != . ]; do
      if [ -e "$ef_p" ]; then
        ef_n=$((ef_n + 1)); touch -r "$ef_p" "$ef_m/$ef_n" && printf '%s\0' "$ef_p" >>"$ef_m/paths"
      fi
      case $ef_p in */*) ef_p=${ef_p%/*} ;; *) ef_p=. ;; esac
    done
  done <"$ef_m/list"
  git apply "$1" && ef_n=0 && if [ -f "$ef_m/paths" ]; then
    while IFS= read -r -d '' ef_p; do
      ef_n=$((ef_n + 1)); [ -e "$ef_p" ] && touch -r "$ef_m/$ef_n" "$ef_p"
    done <"$ef_m/paths"
  fi && tar --sort=name --exclude=./.git -cf "$ef_m/tree.tar" . &&
  find . -mindepth 1 -maxdepth 1 ! -name .git -exec rm -rf {} + && tar -xpf "$ef_m/tree.tar"
}; ef_rc=$?; rm -rf "$ef_m"; unset ef_m ef_n ef_l ef_p; (exit $ef_rc)"""


class TaskSetupError(SandboxError):
    """The sandbox could not be brought to the task's base commit: an infrastructure fault."""


async def commit_bug(sandbox: Sandbox, bug_patch: str, workdir: str = "/testbed", *,
                     erase_history: bool = True, expected: str | None = None) -> str:
    """Apply `bug_patch` to the clean repository and make it the one root commit; returns its hash.

    In an agent's sandbox (`erase_history`) no file's metadata (mtime, ctime, inode, mode, order
    in its folder's listing) tells the changed files from the others: see APPLY_QUIETLY.

    The commit has fixed author, committer and dates, so the hash is the same wherever it is made,
    and no history or object in `.git` may show the clean code: an agent could read the answer
    from `git log -p`, and code under test could apply it while the tests run. With
    `erase_history` (every sandbox an agent works in) the repository is re-initialised. Without
    it (grading), the same commit is written from the index (`git apply --cached`, `git
    commit-tree`) and the clean commit's objects are pruned: the same result without hashing and
    compressing every file again; when the clean commit survives (packed objects) or the hash is not `expected`, the
    repository is re-initialised from the patched files. The index's file stats are refreshed,
    so the eval script's `git checkout <base> -- tests` leaves unchanged test files (and the
    byte code the image holds for them) alone.
    """
    await sandbox.write_file(BUG_PATCH_PATH, bug_patch)
    reinit_tree = f"rm -rf .git && git init -q && git add -A && {FIXED_DATES} git commit -q -m base"
    if erase_history:
        make = f"bash -c {shlex.quote(APPLY_QUIETLY)} apply {BUG_PATCH_PATH} && {reinit_tree}"
    else:
        check = f' || [ "$(git rev-parse HEAD)" != {shlex.quote(expected)} ]' if expected else ""
        make = (
            f"clean=$(git rev-parse HEAD) && if git apply --cached {BUG_PATCH_PATH} && git apply {BUG_PATCH_PATH}; "
            f"then git update-ref HEAD \"$({FIXED_DATES} git commit-tree \"$(git write-tree)\" -m base)\" && "
            "rm -rf .git/logs && git prune --expire=now && "
            "{ git update-index -q --refresh >/dev/null || :; } && "
            f"if git cat-file -e \"$clean\" 2>/dev/null{check}; then {reinit_tree}; fi; "
            f"else git apply {BUG_PATCH_PATH} && {reinit_tree}; fi"
        )
    res = await sandbox.exec(
        f"cd {workdir} && {{ {make}; }} && rm -f {BUG_PATCH_PATH} && git rev-parse HEAD", timeout=120,
    )
    if res.exit_code != 0 or not res.output.strip():
        raise TaskSetupError(f"the bug patch did not apply in sandbox {sandbox.id}: {res.output[-500:]}")
    return res.output.strip().splitlines()[-1]


async def prepare_repository(sandbox: Sandbox, task: Task, workdir: str = "/testbed", *,
                             for_agent: bool = True) -> str:
    """Bring a fresh sandbox to `base_commit` (made from `bug_patch` when the task has one);
    returns the commit, which the agent's diff and grading's reverts are taken against.

    `for_agent=False` (grading) takes the cheaper way to the same commit: see `commit_bug`. A
    bug-patch task may leave `base_commit` empty (SWE-smith rows: the hash of the commit made
    here depends on every file of the image): then whatever commit_bug made is the base.

    A hash mismatch means the image is not the one the task was made from. Simulated sandboxes
    (the sim backend) hold no repository: they pay the time of the set-up command and no more.
    """
    if sandbox.simulated:
        await sandbox.exec(f"cd {workdir} && git checkout -q {task.base_commit or 'HEAD'}", timeout=60)
        return task.base_commit
    if task.bug_patch:
        head = await commit_bug(sandbox, task.bug_patch, workdir, erase_history=for_agent,
                                expected=task.base_commit or None)
        ok = True
        if not task.base_commit:
            return head
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
    return head
