"""An exclusive lock shared by every process on this machine: one image fetch, build or adaptation
at a time per (engine, image), however many hosts, launches or graders ask at once.

Why a file lock: the farm's hosts on one node are separate processes (and a grader or a second
launch may be too), and two of them building or loading the same image at once do the work twice
and leave the loser's copy dangling. `flock` is released by the kernel when its holder dies, so a
crashed builder never wedges the node.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path


class NodeLock:
    """`with NodeLock(key):` blocks until no other process on this machine holds `key`."""

    def __init__(self, key: str, prefix: str = "envfarm-image") -> None:
        name = hashlib.sha256(key.encode()).hexdigest()[:16]
        self.path = Path(tempfile.gettempdir()) / f"{prefix}-{name}.lock"
        self._fd: int | None = None

    def __enter__(self) -> NodeLock:
        self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


__all__ = ["NodeLock"]
