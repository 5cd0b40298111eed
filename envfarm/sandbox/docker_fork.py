"""Forking a Docker sandbox: n children that hold the parent's files and shell state.

Why this mechanism (measured side by side in docs/BENCHMARKS.md): `docker commit` shares a large
change between the children instead of copying it into each, but its children must be started
cold from the new image (no warm pool) and the image tracked until the last child is gone; for
the common case, a parent that edited a few MB, streaming into warm children is faster. CRIU
needs an engine in experimental mode, and `criu check` fails on these machines' kernel. Here
children are ordinary sandboxes (from the caller's factory, so a warm pool's ready ones serve)
and only what the parent changed travels into them:

1. the changed paths come from the parent's overlay upper directory, walked on this machine
   (it only lists names: no byte is read there, no link followed); where that directory cannot
   be read, or the kernel records renamed directories in it, the engine's `docker diff` says;
2. one archive of those paths is made *inside the parent*, by `tar` running as the sandbox's
   user: it can hold nothing that user cannot read;
3. each child gets that archive and the list of deleted paths as two plain files in a folder of
   its user's home (one call of the engine's archive API: a folder and two files of ours, never
   the parent's archive unpacked by root); its own session, as the sandbox's user again, removes
   the deleted paths and unpacks the archive with the child's pristine `tar`, then the folder:
   nothing lands where that user could not write and nothing runs as root. The agent could have
   done each step itself with the same tools;
4. the shell state (exported variables, umask, working directory) is replayed in each child's
   session, which is what the agent's own commands would do.

Processes are not forked: whatever the parent left running in the background is not in the
children (their shells start fresh, then take the state above).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import re
import secrets
import stat
import tarfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from envfarm.sandbox.base import SandboxError, SandboxFactory
from envfarm.sandbox.layer_reset import open_folder, read_xattr

if TYPE_CHECKING:
    from envfarm.sandbox.docker_backend import DockerSandbox

LABEL_FORK_OF = "envfarm.fork_of"

# one archive may carry at most this much (the parent's changes, held in this process's memory
# once, and sent to every child from that one copy)
FORK_ARCHIVE_MAX = 512 << 20
# the walk's own bounds: the agent decides how many and how deep its paths are, this process
# holds them all (a chain of a few thousand long folder names is gigabytes of path strings)
PATH_BYTES_MAX = 4096  # one path (the kernel's PATH_MAX)
PATHS_BYTES_MAX = 64 << 20  # all paths of one fork together
SHELL_STATE_MAX = 4 << 20

# Archives the NUL-separated paths on stdin, as they are, to stdout. Folders the sandbox's user
# does not own are left out: they were there before (that user could not have made them), the
# child has them too, and an unprivileged `tar` cannot set their metadata; what they hold travels.
ARCHIVE_SCRIPT = (
    'set -o pipefail; find -files0-from - -maxdepth 0 ! \\( -type d ! -uid "$EUID" \\) -print0 '
    '| tar -c -S -f - -C / --null --verbatim-files-from --no-recursion --ignore-failed-read '
    '--warning=no-file-changed --warning=no-file-removed -T -'
)

# Inboxes up to this size reach a child over its own fresh shell session (`head -c N | tar -x`
# as the child's user, before the agent ever acted in that child); larger ones through the
# engine's archive API, which starts a process per call (about 0.2 to 0.4 s each with 8 children
# on 2 cores) but copies many megabytes faster than a stream.
INBOX_STREAM_MAX = 16 << 20

# the variables a child keeps as its own (they name the machine or the shell, not the agent's work)
OWN_VARIABLES = ("HOSTNAME", "PWD", "OLDPWD", "SHLVL", "_")


@dataclass
class Changes:
    """What the parent's writable layer holds: paths to copy and paths to delete in a child."""

    copy: list[str] = field(default_factory=list)  # files, links and folders, parents first
    delete: list[str] = field(default_factory=list)  # deleted in the parent (or emptied and refilled)
    source: str = "upperdir"  # or "engine": `docker diff`
    # copy paths the archive does not hold (unreadable, a socket, gone while archived; folders
    # the user does not own): a child must never keep its image's version of such a path, which
    # for a task's changed file is the clean code (see `MISSING_SCRIPT`)
    missing: list[str] = field(default_factory=list)
    path_bytes: int = 0

    def add(self, path: str, deleted: bool = False) -> None:
        """One more path, within the fork's bounds (SandboxError past them: no fork)."""
        size = len(path.encode("utf-8", "surrogateescape")) + 1
        if size > PATH_BYTES_MAX:
            raise SandboxError(f"fork: a changed path is longer than {PATH_BYTES_MAX} bytes ({path[:100]}...)")
        self.path_bytes += size
        if self.path_bytes > PATHS_BYTES_MAX:
            raise SandboxError(f"fork: the changed paths take more than {PATHS_BYTES_MAX >> 20} MiB")
        (self.delete if deleted else self.copy).append(path)


# In a child, before the archive is unpacked: each copy path the archive lacks is removed, unless
# it is a folder the user does not own (the archive leaves those out on purpose: the child has
# them as the parent does, and their content travels). A folder the user owns is archived
# whenever the parent has one there, so one missing means the parent has something else there.
MISSING_SCRIPT = ('for p; do if [ -d "$p" ] && [ ! -L "$p" ] && [ ! -O "$p" ]; then :; '
                  'else rm -rf -- "$p" || exit 1; fi; done')


def upper_changes(upper: str, limit: int = 2_000_000) -> Changes | None:
    """The changes recorded in an overlay upper directory, or None where it cannot be read
    completely (not root, another engine's data root) or records a renamed directory (a
    `redirect`: its content lives below and the names alone would not carry it). Folders are
    opened by descriptor, never by a path a link could redirect: the agent may swap a folder
    for a link while this walks, and this process is root here. More than `limit` entries, or
    paths past the bounds of `Changes.add`: SandboxError (no fork)."""
    out = Changes()
    pending: list[list[str]] = [[]]
    try:
        while pending:
            parts = pending.pop()
            fd = open_folder(upper, parts)
            if fd is None:
                return None  # gone, or a link now: the walk cannot be complete
            try:
                if parts and read_xattr(fd, "trusted.overlay.redirect") is not None:
                    return None
                if parts and read_xattr(fd, "trusted.overlay.opaque") == b"y":
                    out.add("/" + "/".join(parts), deleted=True)  # emptied below, then refilled: start it afresh
                with os.scandir(fd) as entries:
                    for entry in entries:
                        path = "/" + "/".join([*parts, entry.name])
                        st = entry.stat(follow_symlinks=False)
                        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                            out.add(path, deleted=True)  # a whiteout
                            continue
                        out.add(path)
                        if stat.S_ISDIR(st.st_mode):
                            pending.append([*parts, entry.name])
                        if len(out.copy) + len(out.delete) > limit:
                            raise SandboxError(f"fork: more than {limit} changed paths")
            finally:
                os.close(fd)
    except OSError:
        return None
    out.copy.sort()
    out.delete.sort()
    return out


def engine_changes(api: Any, container_id: str) -> Changes:
    """The changes as the engine lists them (`docker diff`: slow where it walks the whole tree)."""
    out = Changes(source="engine")
    for change in api.diff(container_id) or []:
        out.add(change["Path"], deleted=change["Kind"] == 2)
    out.copy.sort()
    return out


async def _run(sandbox: DockerSandbox, argv: list[str], stdin: bytes, out_max: int, what: str) -> bytes:
    """`argv` fed `stdin` as the sandbox's user (its `host_exec`); its stdout, or SandboxError
    naming `what` failed. Exit status 1 passes: `tar` says so when a path changed while read."""
    res = await sandbox.host_exec(argv, timeout=600, output_limit=out_max, stdin=stdin)
    if res.truncated:
        raise SandboxError(f"sandbox {sandbox.id}: {what}: more than {out_max} bytes")
    if res.exit_code not in (0, 1) or res.timed_out:
        raise SandboxError(f"sandbox {sandbox.id}: {what} failed (exit {res.exit_code}, "
                           f"{'timed out' if res.timed_out else 'done'}): {res.stderr.decode(errors='replace')[-300:]}")
    return res.stdout


async def snapshot(parent: DockerSandbox) -> tuple[Changes, bytes, str]:
    """The parent's changes, their archive (made inside the parent as its user) and the shell
    lines that give a child the parent's exported variables, umask and working directory."""
    from envfarm.sandbox.docker_backend import _in_thread

    state = await parent.exec("builtin umask; builtin export -p", timeout=30, output_limit=SHELL_STATE_MAX)
    if state.exit_code != 0 or state.truncated:
        raise SandboxError(f"sandbox {parent.id}: cannot read its shell state for a fork: {state.output[-300:]}")
    umask, _, exports = state.output.partition("\n")
    info = await _in_thread(parent._api.inspect_container, parent.container.id)
    upper = (info.get("GraphDriver") or {}).get("Data", {}).get("UpperDir")
    changes = (await _in_thread(upper_changes, upper) if upper else None) \
        or await _in_thread(engine_changes, parent._api, parent.container.id)
    archive = b""
    if changes.copy:
        names = b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in changes.copy)
        archive = await _run(parent, ["bash", "-c", ARCHIVE_SCRIPT], names, FORK_ARCHIVE_MAX, "archiving its changes")
        held = await _in_thread(archive_members, archive)
        changes.missing = [p for p in changes.copy if p.lstrip("/") not in held]
    cwd = parent._session.cwd or parent.spec.workdir
    return changes, archive, restore_script(exports, umask.strip(), cwd)


def archive_members(archive: bytes) -> set[str]:
    """The member names of a tar archive made by ARCHIVE_SCRIPT (relative to /, no trailing
    slash); read by name only, nothing is extracted here."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            return {m.name.rstrip("/") for m in tar}
    except tarfile.TarError as exc:
        raise SandboxError(f"fork: the parent's archive cannot be read: {exc}") from exc


_UMASK = re.compile(r"[0-7]{1,4}")  # anything else (a shell function named `builtin` printed it): the default


def restore_script(exports: str, umask: str, cwd: str) -> str:
    """Shell lines that make a fresh session's exported variables those of `exports` (the
    parent's `export -p`), less OWN_VARIABLES, then set the umask and the working directory."""
    own = [v for v in OWN_VARIABLES if v not in ("PWD", "OLDPWD", "_")]
    keep = "; ".join(f"__ef_keep_{v}=${{{v}-}}" for v in own)
    back = "; ".join(f"export {v}=\"$__ef_keep_{v}\"; builtin unset __ef_keep_{v}" for v in own)
    return (f"{keep}\nfor __ef_v in $(builtin compgen -e); do builtin unset \"$__ef_v\" 2>/dev/null; done; "
            f"builtin unset __ef_v\n{exports}\n{back}\nbuiltin umask {umask if _UMASK.fullmatch(umask) else '0022'}\n"
            f"builtin cd -- {_q(cwd)} 2>/dev/null || true")




def inbox(changes: Changes, archive: bytes) -> tuple[str, bytes]:
    """The files a child receives (the archive, the deleted and the missing paths) as one tar of
    a folder with a name of its own: built once per fork, sent to every child as it is."""
    name = f".envfarm-fork-{secrets.token_hex(8)}"
    files = {"changes.tar": archive, "deleted": _nul_list(changes.delete), "missing": _nul_list(changes.missing)}
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        top = tarfile.TarInfo(name)
        top.type, top.mode, top.mtime = tarfile.DIRTYPE, 0o777, now
        tar.addfile(top)
        for file, data in files.items():
            info = tarfile.TarInfo(f"{name}/{file}")
            info.size, info.mode, info.mtime = len(data), 0o644, now
            tar.addfile(info, io.BytesIO(data))
    return name, buf.getvalue()


def _nul_list(paths: list[str]) -> bytes:
    return b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)


async def receive(child: DockerSandbox, changes: Changes, archive: bytes, restore: str,
                  payload: tuple[str, bytes] | None = None) -> None:
    """Give a fresh child the parent's changes and shell state, all as the child's user.

    The archive and the lists of deleted and missing paths arrive as files in a folder of their
    own in the user's home (the engine's archive API, one call: files of ours, never the
    parent's archive unpacked by root; `payload`: `inbox(changes, archive)` made once for every
    child); the child's own session then removes the deleted paths and the missing ones (see
    MISSING_SCRIPT), unpacks the archive with the image's `tar` as the sandbox's user, removes
    the folder and takes the shell state. No process is started per child besides those of its
    session."""
    from envfarm.sandbox.docker_backend import _in_thread

    home = await child.exec('[ -d "$HOME" ] && [ -w "$HOME" ] && builtin printf %s "$HOME"', timeout=30)
    folder = home.output
    if home.exit_code != 0 or not folder.startswith("/") or "\n" in folder:
        raise SandboxError(f"fork into sandbox {child.id}: its user has no writable home to receive the parent's "
                           f"changes in: {home.output[-200:]}")
    name, data = payload or inbox(changes, archive)
    if len(data) <= INBOX_STREAM_MAX:  # over the child's open session: no process in the engine
        res = await child._session.exec_with_data(
            f"head -c {len(data)} | tar -x -f - -C {_q(folder)} --no-same-owner", data, 600, 64 << 10)
        if res.exit_code != 0:
            raise SandboxError(f"fork into sandbox {child.id}: receiving the parent's changes failed: "
                               f"{res.output[-300:]}")
    else:  # the engine's archive API: it holds a large archive better than a stream through a shell
        await _in_thread(child._api.put_archive, child.container.id, folder, data)
    box = _q(f"{folder.rstrip('/')}/{name}")
    res = await child.exec(
        f"if xargs -0 -r rm -rf -- < {box}/deleted && xargs -0 -r sh -c {_q(MISSING_SCRIPT)} sh < {box}/missing "
        f"&& tar -x -f {box}/changes.tar -C / -p --no-same-owner --no-overwrite-dir --warning=no-timestamp; "
        f"then rm -rf {box}; else rm -rf {box}; false; fi", timeout=600)
    if res.exit_code != 0:
        raise SandboxError(f"fork into sandbox {child.id}: unpacking the parent's changes failed: {res.output[-300:]}")
    res = await child.exec(restore, timeout=30)
    if res.exit_code != 0:
        raise SandboxError(f"fork into sandbox {child.id}: the parent's shell state did not apply: {res.output[-300:]}")


async def fork(parent: DockerSandbox, n: int, factory: SandboxFactory | None = None) -> list[Any]:
    """n children of `parent` (see the module's doc). `factory` makes each child exactly as any
    sandbox is made (a warm pool's factory hands out ready ones); by default the backend's
    create with the parent's owner, run and task. On any failure every child is closed."""
    from envfarm.sandbox.docker_backend import LABEL_OWNER, LABEL_RUN, LABEL_TASK, DockerSandbox, _in_thread

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"fork(n): n must be a positive whole number of children, got {n!r}")
    spec = dataclasses.replace(parent.requested_spec, labels={**parent.requested_spec.labels,
                                                              LABEL_FORK_OF: parent.container.id[:12]})
    labels = parent.container.labels or {}
    task = labels.get(LABEL_TASK, "")
    make: Callable[[], Awaitable[Any]]
    if factory is None:
        def make() -> Awaitable[Any]:
            return DockerSandbox.create(spec, owner=labels.get(LABEL_OWNER), run=labels.get(LABEL_RUN, "adhoc"),
                                        task=task)
    else:
        def make() -> Awaitable[Any]:
            return factory(spec, task)

    snap = asyncio.ensure_future(snapshot(parent))
    made = await asyncio.gather(*(make() for _ in range(n)), return_exceptions=True)
    children = [c for c in made if not isinstance(c, BaseException)]
    try:
        try:
            changes, archive, restore = await snap
            payload = await _in_thread(inbox, changes, archive)
            del archive  # the payload holds it: one copy in memory, whatever the number of children
        except OSError as exc:  # the engine's errors among them (docker.errors.APIError)
            raise SandboxError(f"fork of sandbox {parent.id}: {exc}") from exc
        failed = [c for c in made if isinstance(c, BaseException)]
        if failed:
            raise failed[0]
        for child in children:
            inner = getattr(child, "_inner", child)  # a pooled sandbox's own
            if not isinstance(inner, DockerSandbox) or inner.spec.user != parent.spec.user:
                raise SandboxError(f"fork of sandbox {parent.id}: the factory made {type(inner).__name__} "
                                   f"{getattr(inner, 'id', '?')}, not a Docker sandbox of the same user")
        try:
            await asyncio.gather(*(receive(getattr(c, "_inner", c), changes, b"", restore, payload)
                                   for c in children))
        except OSError as exc:
            raise SandboxError(f"fork of sandbox {parent.id}: {exc}") from exc
    except BaseException:
        if not snap.done():
            snap.cancel()
        await asyncio.gather(*(c.close() for c in children), return_exceptions=True)
        raise
    return children


def _q(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"

