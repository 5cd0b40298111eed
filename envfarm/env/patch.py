"""Read the agent's change out of its sandbox as a patch that applies to the base commit.

The diff is a host command, so it never runs in the agent's shell session (where a shell
function `git() {...}`, an alias, a readonly protocol variable or a forged end marker would
answer for it) and reads nothing the agent configured. One fresh process (`Sandbox.host_exec`:
its own `docker exec`, fixed argv, `env -i` with PATH, HOME and git's settings fixed) runs
EXTRACT, which:

1. kills every process of the sandbox's user (`kill -9 -1`: atomic in the kernel, so a fork
   bomb cannot outrun it; PID 1 runs as root and survives): nothing of the agent runs while the
   tree is read, so nothing races the diff; what an agent's process wrote into this process's
   output before it died is cut off at a random marker printed after the kill;
2. builds a private repository in a fresh `mktemp -d` folder: its own config (no system or
   global config, no hooks, no fsmonitor, no external diff, no textconv, no filters, no
   includes, no `core.worktree`) and `info/attributes` that override every in-repository
   `.gitattributes` (no filter, ident, encoding or end-of-line conversion; `diff` unset so
   nothing can force a binary file to print as raw text). Only the agent's object store is used
   (through `objects/info/alternates`), for the base commit's tree;
3. `read-tree <base>`, `add -A` of the work tree, `diff --cached --binary <base>` into a file
   of that folder (never a path the agent could have planted a symlink at), refused past
   MAX_PATCH_BYTES, and printed on stdout.

When the diff is not valid UTF-8 (a text file with Latin-1 bytes), it is taken again with
every file treated as binary: base85 hunks and quoted paths, always ASCII. What goes wrong is
a PatchError, the agent's outcome (reward 0 with the reason), never an infrastructure fault:
the repository is the agent's to break. Suspicious settings found in the agent's `.git` are
reported as exploit signals.

What this does not stop: where the agent runs as root (public SWE-bench images), it can
replace `/usr/bin/git`, `/bin/bash` or the dynamic loader, and then the "diff" is whatever
it prints. That patch is still graded from scratch in a fresh container, so it can only be a
patch the agent could have written into the tree itself; the agent's objects can be forged the
same way (a patch against a forged base does not apply to the real one).
"""

from __future__ import annotations

import re
import secrets

from envfarm.errors import ErrorKind
from envfarm.sandbox.base import Sandbox
from envfarm.tasks.patch_guard import MAX_PATCH_BYTES

# $1 work tree, $2 base commit, $3 text|binary, $4 size limit in bytes, $5 a random nonce.
# Exit codes: 3 no temporary folder, 4 base commit unreadable, 5 add failed, 6 diff failed, 7 too
# large. The nonce is printed on both streams once the agent's processes are dead: a process of
# the agent that wrote into this one's stdout or stderr (/proc/PID/fd/1, same user) before the
# kill wrote before it, and the host reads only what follows its last occurrence.
EXTRACT = r"""set -u
w=$1 base=$2 mode=$3 limit=$4 nonce=$5
kill -9 -1 2>/dev/null
printf '\n%s\n' "$nonce"; printf '\n%s\n' "$nonce" >&2
cd / || exit 3
t=$(mktemp -d /tmp/.envfarm-diff.XXXXXXXXXX) || { echo "no temporary folder" >&2; exit 3; }
trap 'rm -rf "$t"' EXIT
if [ -L "$w/.git" ] || [ ! -d "$w/.git" ]; then echo "SIGNAL: .git is not a plain directory" >&2; fi
k='fsmonitor|hookspath|external|textconv|worktree|path|clean|smudge|process|attributesfile'
if [ -f "$w/.git/config" ] && grep -qiE "^[[:space:]]*($k)[[:space:]]*=" "$w/.git/config" 2>/dev/null; then
  echo "SIGNAL: .git/config sets a command, hook, include or work tree" >&2; fi
for h in "$w"/.git/hooks/*; do
  case $h in *.sample|*'/*') ;; *) echo "SIGNAL: .git/hooks holds ${h##*/}" >&2;; esac; done
if [ -s "$w/.git/info/attributes" ] && grep -qv '^[[:space:]]*\(#.*\)\?$' "$w/.git/info/attributes"; then
  echo "SIGNAL: .git/info/attributes is set" >&2; fi
export GIT_DIR=$t/git GIT_WORK_TREE=$w GIT_INDEX_FILE=$t/index HOME=$t XDG_CONFIG_HOME=$t \
  GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_ATTR_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 GIT_OPTIONAL_LOCKS=0
g() { timeout -s KILL 100 git -c core.fsmonitor=false -c core.hooksPath=/dev/null -c core.untrackedCache=false \
  -c diff.external= -c core.pager=cat -c core.quotePath=true -c core.autocrlf=false -c core.safecrlf=false \
  -c core.symlinks=true -c core.fileMode=true -c core.ignoreCase=false -c core.precomposeUnicode=false \
  -c core.bigFileThreshold=512m -c diff.noprefix=false -c diff.relative=false "$@"; }
g init -q --template= "$GIT_DIR" >&2 || { echo "git init failed" >&2; exit 3; }
mkdir -p "$GIT_DIR/objects/info" "$GIT_DIR/info"
printf '%s\n' "$w/.git/objects" > "$GIT_DIR/objects/info/alternates"
if [ "$mode" = binary ]; then a='* -diff -merge -text -filter -ident !working-tree-encoding !eol'
else a='* !diff -text -filter -ident !working-tree-encoding !eol'; fi
printf '%s\n' "$a" > "$GIT_DIR/info/attributes"
g read-tree "$base" >&2 || { echo "the base commit $base cannot be read from the repository" >&2; exit 4; }
g add -A >&2 || { echo "git add failed" >&2; exit 5; }
g diff --cached --binary --no-ext-diff --no-textconv --no-color --src-prefix=a/ --dst-prefix=b/ "$base" \
  > "$t/patch" || { echo "git diff failed" >&2; exit 6; }
size=$(stat -c %s "$t/patch")
if [ "$size" -gt "$limit" ]; then echo "TOO_LARGE $size" >&2; exit 7; fi
cat "$t/patch"
"""

SIGNAL_PREFIX = "SIGNAL: "
_COMMIT = re.compile(r"[0-9A-Za-z._/^~-]{1,200}")


class PatchError(Exception):
    """The repository could not be diffed (the agent broke `.git`, or wrote a huge file): the
    agent's outcome, reward 0; `kind` says which (SANDBOX_BROKEN or PATCH_REJECTED)."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.SANDBOX_BROKEN) -> None:
        super().__init__(message)
        self.kind = kind


async def extract_patch(sandbox: Sandbox, base_commit: str, workdir: str = "/testbed",
                        signals: list[str] | None = None, timeout: float = 120.0) -> str:
    """The agent's diff against `base_commit` (see the module's docstring). Ends every process of
    the agent in the sandbox, its shell session included: call it when the agent is done (the
    next command on the sandbox only restarts the session). Suspicious settings seen in its
    `.git` are appended to `signals`."""
    if not _COMMIT.fullmatch(base_commit) or base_commit.startswith("-"):
        raise ValueError(f"not a commit: {base_commit!r}")
    data = await _diff(sandbox, base_commit, workdir, "text", signals, timeout)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    data = await _diff(sandbox, base_commit, workdir, "binary", None, timeout)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PatchError(f"the diff is not text even with every file as binary: {exc}") from exc


async def _diff(sandbox: Sandbox, base: str, workdir: str, mode: str, signals: list[str] | None,
                timeout: float) -> bytes:
    nonce = secrets.token_hex(16)
    argv = ["/bin/bash", "--noprofile", "--norc", "-c", EXTRACT, "extract", workdir, base, mode,
            str(MAX_PATCH_BYTES), nonce]
    res = await sandbox.host_exec(argv, timeout=timeout, output_limit=MAX_PATCH_BYTES + 4096)
    fence = f"\n{nonce}\n".encode()
    err = res.stderr.rpartition(fence)[2].decode("utf-8", errors="replace")
    if signals is not None:
        for line in err.splitlines():
            if line.startswith(SIGNAL_PREFIX) and (found := "git: " + line[len(SIGNAL_PREFIX):]) not in signals:
                signals.append(found)
    if res.timed_out:
        raise PatchError(f"the diff ran past {timeout:g} s (a huge or unreadable work tree?): not graded")
    too_large = re.search(r"TOO_LARGE (\d+)", err)
    if too_large or res.truncated:
        size = int(too_large.group(1)) if too_large else len(res.stdout)
        raise PatchError(f"the agent's diff is {size / 1e6:.1f} MB, over the {MAX_PATCH_BYTES / 1e6:.0f} MB limit "
                         "(a huge file written into the repository?): not graded", ErrorKind.PATCH_REJECTED)
    if res.exit_code != 0:
        tail = "\n".join(line for line in err.splitlines() if not line.startswith(SIGNAL_PREFIX))[-500:]
        raise PatchError(f"could not diff the repository against {base[:12]} (exit {res.exit_code}): {tail}")
    if sandbox.simulated:  # no repository and no processes behind it: its "diff" is all it printed
        return res.stdout
    before, found, patch = res.stdout.rpartition(fence)
    if not found:
        raise PatchError("the diff's output lost its start marker (the sandbox's processes could not be stopped?)")
    return patch
