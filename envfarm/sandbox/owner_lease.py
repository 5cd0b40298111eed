"""Sandboxes never outlive their owner: the owner's lease on each container, and the exit hook.

Why a lease held by the engine's own connection: a container must notice that the process that
created it is gone (SIGKILL, OOM, a lost node's driver) without anyone else running. Every Docker
sandbox is created with stdin open and `StdinOnce` (stdin is closed when the first attached
client goes), and with auto-remove. Its owner attaches to PID 1's stdin before starting it and
keeps that connection for the sandbox's life: while the owner lives, the connection stays open
and costs nothing (no heartbeat, no command, no thread); when the owner's process ends in any
way, the kernel closes its socket, the engine closes PID 1's stdin, PID 1 reads end-of-file,
waits the grace period, and exits, and the engine removes the container (see
`docker_backend.PID1_SCRIPT`). The agent cannot touch the lease: PID 1's stdin belongs to root
(the agent runs as another user and cannot open /proc/1/fd/0), the connection lives in the
engine and in the owner's process, and PID 1 does not watch anything the agent can create,
kill or fake (not its session, not its processes, not a file).

Normal exit: an `atexit` hook removes, through the Docker SDK and in parallel within a time
bound, every container this process created and did not close; what is still there after the
bound is told to go at once over its lease (a line `bye` on PID 1's stdin). Closing an env,
pool or farm removes its sandboxes as before; the hook is for the scripts and notebooks that end
without closing.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# PID 1 exits at once on this line (the owner is done with the sandbox), and after the grace
# period on end-of-file (the owner is gone).
RELEASE = b"bye\n"
REAP = b"reap\n"  # any other line wakes PID 1, which then reaps its dead children

DEFAULT_GRACE_S = 10.0
DEFAULT_MAX_LIFETIME_S = 4 * 3600.0
GRACE_ENV = "ENVFARM_SANDBOX_GRACE_S"
MAX_LIFETIME_ENV = "ENVFARM_SANDBOX_MAX_LIFETIME_S"
EXIT_BOUND_ENV = "ENVFARM_EXIT_CLEANUP_S"  # how long the exit hook may take, in all

_lock = threading.Lock()
_leases: dict[str, Any] = {}  # container id -> the attach socket that holds its lease
_pid = os.getpid()
_remover: Callable[[str], None] | None = None


def grace_s(spec_value: float | None) -> float:
    """The grace period of a sandbox: its spec's, else $ENVFARM_SANDBOX_GRACE_S, else 10 s."""
    return _resolve(spec_value, GRACE_ENV, DEFAULT_GRACE_S)


def max_lifetime_s(spec_value: float | None) -> float:
    """The hard maximum lifetime of a sandbox: its spec's, else $ENVFARM_SANDBOX_MAX_LIFETIME_S,
    else 4 hours (episode_timeout_s 1800 + grading_timeout_s 600 by default, with a wide margin)."""
    return _resolve(spec_value, MAX_LIFETIME_ENV, DEFAULT_MAX_LIFETIME_S)


def _resolve(value: float | None, env: str, default: float) -> float:
    if value is None:
        value = float(os.environ.get(env) or default)
    if value <= 0:
        raise ValueError(f"{env.lower()} must be positive, got {value}")
    return value


def hold(container_id: str, sock: Any, remover: Callable[[str], None]) -> None:
    """Keep `sock` (an attach connection to PID 1's stdin) for as long as the sandbox lives."""
    global _remover
    with _lock:
        _remover = remover
        _leases[container_id] = sock


def drop(container_id: str, release: bool = False) -> None:
    """Forget a sandbox's lease (after its removal), closing the connection; `release`: tell
    PID 1 to exit at once first."""
    with _lock:
        sock = _leases.pop(container_id, None)
    if sock is not None:
        _close(sock, release)


def poke(container_id: str) -> bool:
    """Wake PID 1 of a sandbox this process holds (it reaps its dead children when it wakes);
    False where no lease is held or the line could not be sent."""
    with _lock:
        raw = _raw(_leases.get(container_id))
        if raw is None:
            return False
        try:
            raw.settimeout(1.0)
            raw.sendall(REAP)
            return True
        except OSError:
            return False


def held() -> list[str]:
    """Container ids this process holds leases on (sandboxes created and not closed)."""
    with _lock:
        return list(_leases) if os.getpid() == _pid else []


def _raw(sock: Any) -> socket.socket | None:
    return getattr(sock, "_sock", sock) if sock is not None else None


def _close(sock: Any, release: bool) -> None:
    raw = _raw(sock)
    try:
        if raw is not None and release:
            raw.settimeout(1.0)
            raw.sendall(RELEASE)
    except OSError:
        pass
    try:
        if raw is not None:
            raw.shutdown(socket.SHUT_RDWR)  # whatever else still refers to the socket
    except OSError:
        pass
    for obj in (sock, raw):
        try:
            if obj is not None:
                obj.close()
        except OSError:
            pass


def remove_all(bound_s: float | None = None) -> int:
    """Remove every sandbox this process still holds, in parallel, within `bound_s` seconds;
    returns how many were removed through the engine's API (the rest were told to go)."""
    if bound_s is None:
        bound_s = float(os.environ.get(EXIT_BOUND_ENV) or 20.0)
    with _lock:
        if os.getpid() != _pid:
            return 0
        items = list(_leases.items())
        remover = _remover
    if not items or remover is None:
        return 0
    deadline = time.monotonic() + bound_s
    removed: set[str] = set()
    pending = [cid for cid, _ in items]

    def worker() -> None:
        while time.monotonic() < deadline:
            try:
                cid = pending.pop()
            except IndexError:
                return
            try:
                remover(cid)
                removed.add(cid)
            except Exception as exc:  # noqa: BLE001 - the lease below still ends it
                log.debug("exit hook: could not remove %s: %s", cid[:12], exc)

    threads = []
    try:
        for _ in range(min(32, len(items))):
            t = threading.Thread(target=worker, name="envfarm-exit-cleanup", daemon=True)
            t.start()
            threads.append(t)
    except RuntimeError:  # no new threads at this point of the interpreter's shutdown
        pass
    if not threads:
        worker()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for cid, _ in items:  # removed: just close; not removed in time: PID 1 exits on `bye`
        drop(cid, release=cid not in removed)
    return len(removed)


def _forget_in_child() -> None:
    """After fork: the child must not keep its parent's sandboxes alive by holding copies of
    their lease connections (closing the copies leaves the parent's connections open)."""
    global _pid, _lock
    _lock = threading.Lock()
    for sock in _leases.values():
        raw = _raw(sock)
        try:  # this process's copy of the descriptor only: no shutdown, which would end the lease
            if raw is not None and raw.fileno() >= 0:
                os.close(raw.detach())
        except OSError:
            pass
    _leases.clear()
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forget_in_child)


@atexit.register
def _at_exit() -> None:
    n = len(held())
    if n:
        removed = remove_all()
        log.info("removed %d of %d sandbox(es) left open at exit", removed, n)
