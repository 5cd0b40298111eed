"""A sandbox without a network, started without the engine's network set-up.

`network_mode="none"` still has the engine set up a network sandbox for the container: an OCI
hook re-executes the engine's own binary at every start to hand it the new namespace. Measured
here (`scripts/bench_sandbox.py`, Docker 20.10 on cgroup v1): a create p50 of 331 ms with it and
186 ms without, where runc's own `run` of the same root file system takes 33 ms (timed by hand).
With the container's network *disabled* the engine skips it; the container still gets a network
namespace of its own holding only loopback (up), so it is as cut off as before.

What the engine no longer writes is /etc/hosts (and /etc/resolv.conf): the container would see
an empty file from its init layer, and "localhost" would not resolve, which test suites rely on.
So a read-only bind of a hosts file (the engine's own content for a container without a network)
stands in for it: one file per sandbox, written at its create and removed at its close, never
one file shared by all (a shared inode is a channel between concurrent sandboxes, through locks
and inotify, and its owner's lease would stall every reader on the node). Its source must be on
the engine's machine: where the engine runs elsewhere (a sidecar or remote engine) the engine
refuses the bind, and this process falls back to `network_mode="none"` for good (`fallback`).
Files whose sandbox ended without a close (its owner died) are swept (`sweep_stale`).
/etc/resolv.conf stays empty: a name lookup fails at once rather than after a resolver's timeout.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from docker.types import Mount

log = logging.getLogger(__name__)

HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)

STALE_AFTER_S = 600.0  # a file older than any create takes, whose container is gone

_disabled_for_process = False


def hosts_dir() -> Path:
    """Where this machine keeps the sandboxes' hosts files: /run/envfarm/sandbox-hosts for root, else a
    folder of this user's."""
    if os.geteuid() == 0:
        return Path("/run/envfarm/sandbox-hosts")
    return Path(tempfile.gettempdir()) / f"envfarm-{os.geteuid()}" / "sandbox-hosts"


def _folder() -> Path | None:
    """The hosts folder, made where missing; None unless it and the folder above it are this
    user's alone (no link, no one else may write) and nobody else may rename the latter: the
    engine binds a file by its path, so whoever could swap a folder on it could choose what a
    sandbox's /etc/hosts says, or bind any file of the node into a sandbox."""
    folder = hosts_dir()
    above = folder.parent
    st = os.stat(above.parent)
    if st.st_mode & 0o002 and not st.st_mode & stat.S_ISVTX:
        log.warning("%s may be renamed by anyone: sandboxes start the slower way", above)
        return None
    for path in (above, folder):
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            log.warning("%s is not a folder only this user writes: sandboxes start the slower way", path)
            return None
    return folder


def hosts_file(name: str) -> str | None:
    """A new hosts file for the sandbox `name` (its container's name); None where it cannot be written."""
    try:
        folder = _folder()
        if folder is None:
            return None
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o644)  # readable by the sandbox's user whatever this process's umask
            fh.write(HOSTS)
        return str(path)
    except OSError as exc:
        log.warning("cannot write a sandbox's hosts file in %s (%s): it starts the slower way", hosts_dir(), exc)
        return None


def remove_hosts_file(name: str | None) -> None:
    """Remove the hosts file of sandbox `name`, if any (never raises)."""
    if not name or "/" in name:
        return
    try:
        os.unlink(hosts_dir() / name)
    except OSError:
        pass


def sweep_stale(live_names: Callable[[], set[str]], now: float | None = None) -> int:
    """Remove hosts files older than STALE_AFTER_S whose container is not among `live_names()`
    (asked only when some file is that old); how many."""
    now = time.time() if now is None else now
    try:
        old = [e for e in os.scandir(hosts_dir())
               if e.is_file(follow_symlinks=False) and now - e.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S]
    except OSError:
        return 0
    if not old:
        return 0
    live = live_names()
    removed = 0
    for entry in old:
        if entry.name not in live:
            remove_hosts_file(entry.name)
            removed += 1
    return removed


def create_options(name: str) -> dict[str, Any]:
    """Keyword arguments of `containers.create` for the sandbox `name` without a network."""
    path = None if _disabled_for_process else hosts_file(name)
    if path is None:
        return {"network_mode": "none"}
    return {"network_mode": "none", "network_disabled": True,
            "mounts": [Mount("/etc/hosts", path, type="bind", read_only=True)]}


def is_refused_bind(exc: Exception, source: str) -> bool:
    """Whether the engine refused the bind of the hosts file `source` as missing (it is not on the
    engine's machine): the file was written just before, in a folder only this user may change."""
    text = str(getattr(exc, "explanation", "") or exc)
    return "bind source path does not exist" in text and source in text


def fallback(exc: Exception) -> None:
    """The engine cannot bind this machine's files: every later sandbox of this process uses `none`."""
    global _disabled_for_process
    _disabled_for_process = True
    log.warning("the Docker engine cannot bind this machine's files (%s): sandboxes start with the "
                "engine's network set-up, about 0.15 s slower each", str(exc)[:200])
