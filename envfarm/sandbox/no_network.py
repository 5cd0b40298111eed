"""A sandbox without a network, started without the engine's network set-up.

`network_mode="none"` still has the engine set up a network sandbox for the container: an OCI
hook re-executes the engine's own binary at every start to hand it the new namespace. Measured
here (`scripts/bench_sandbox.py`, Docker 20.10 on cgroup v1): about 145 ms of a 255 ms start,
more than runc's whole `run` (33 ms). With the container's network *disabled* the engine skips
it; the container still gets a network namespace of its own holding only loopback (up), so it
is as cut off as before.

What the engine no longer writes is /etc/hosts (and /etc/resolv.conf): the container would see
an empty file from its init layer, and "localhost" would not resolve, which test suites rely on.
So a read-only bind of a fixed hosts file (the engine's own content for a container without a
network) stands in for it. Its source must be on the engine's machine: this process writes it
on its own; where the engine runs elsewhere (a sidecar or remote engine) the engine refuses
the bind, and this process falls back to `network_mode="none"` for good (`fallback`).
/etc/resolv.conf stays empty: a name lookup fails at once rather than after a resolver's timeout.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
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

_disabled_for_process = False


def hosts_dir() -> Path:
    """Where this machine keeps the hosts file: /run/envfarm for root, else a folder of this user's."""
    if os.geteuid() == 0:
        return Path("/run/envfarm")
    return Path(tempfile.gettempdir()) / f"envfarm-{os.geteuid()}"


def hosts_file() -> str | None:
    """The path of the fixed hosts file, written if missing or not ours; None where it cannot be."""
    folder = hosts_dir()
    try:
        folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        st = os.lstat(folder)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            log.warning("%s is not a folder only this user writes: sandboxes start the slower way", folder)
            return None
        path = folder / "hosts"
        if not _is_ours(path):
            tmp = folder / f".hosts.{os.getpid()}"
            tmp.write_text(HOSTS)
            tmp.chmod(0o644)
            os.replace(tmp, path)  # atomic: a container starting now binds the old or the new, both whole
        return str(path)
    except OSError as exc:
        log.warning("cannot write the sandboxes' hosts file in %s (%s): they start the slower way", folder, exc)
        return None


def _is_ours(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        return (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022
                and fh.read(4096) == HOSTS.encode())


def create_options() -> dict[str, Any]:
    """Keyword arguments of `containers.create` for a sandbox without a network."""
    path = None if _disabled_for_process else hosts_file()
    if path is None:
        return {"network_mode": "none"}
    return {"network_mode": "none", "network_disabled": True,
            "mounts": [Mount("/etc/hosts", path, type="bind", read_only=True)]}


def is_refused_bind(exc: Exception) -> bool:
    """Whether the engine refused the hosts file's bind (its source is not on the engine's machine)."""
    text = str(getattr(exc, "explanation", "") or exc)
    return "/etc/hosts" in text or "bind source path" in text


def fallback(exc: Exception) -> None:
    """The engine cannot bind this machine's files: every later sandbox of this process uses `none`."""
    global _disabled_for_process
    _disabled_for_process = True
    log.warning("the Docker engine cannot bind this machine's files (%s): sandboxes start with the "
                "engine's network set-up, about 0.15 s slower each", str(exc)[:200])
