"""Recycling a Docker sandbox for the next episode of its image: a reset, then a verification.

A fresh sandbox (create, start, shell session, close) costs the machine about 0.27 s of CPU
(scripts/bench_sandbox.py); below that floor only reuse helps. A sandbox an agent (or a grading
run's code under test) used goes back to its image's warm queue only when nothing that happened
in it can be seen by the next user. All of the reset is done from this machine, none of it by
the container's own tools:

1. every process but PID 1 is killed: the processes in the container's cgroup, each through a
   pidfd (which names that process, never a later one given its number) once seen in that cgroup
   still, round after round until PID 1 is alone (a fork bomb refills between rounds; the pids limit bounds it);
2. the writable layer (the overlay's upper directory) is walked, by descriptor, never following
   a link, and compared with the image: a read-only overlay of the container's own lower layers
   mounted here (`ImageView`, envfarm.sandbox.layer_reset), so the kernel resolves the image's
   whiteouts and this code only compares. From a descriptor of the container's root (opened
   once, through PID 1, every step below it opened without following a link) paths the image
   lacks are removed and the image's version of every other changed path
   is written back with its owner, mode, extended attributes and times; /dev/shm and
   /dev/mqueue are emptied;
3. the verification, from the layer alone: every entry of the writable layer must equal the
   image's (type, mode, owner, modification time, size, bytes, link target, extended
   attributes, inode flags), with no whiteout, no hard link, no device and no entry the image
   lacks, and a folder whose listing is the layer's own (opaque, or below one) must hold exactly
   the image's names; every entry gets the image's access time too. The container's other
   writable places (its /dev tree with link targets and times, the top of /sys/fs/cgroup, the
   engine's /etc/hosts, /etc/hostname, /etc/resolv.conf) must equal their state when the sandbox
   was first handed out, and PID 1 must still be alone;
4. what the kernel counted for the container is reset (its memory peak; the last process number
   its PID namespace handed out, set to LAST_PID) and read afresh, then a fresh shell session
   starts (the one command the engine runs for a reset) and removes and checks System V IPC
   objects, with the tools just verified.

A sandbox that fails any step is closed as any used sandbox, and a fresh one takes its place.
A sandbox whose user is root is never recycled: without capabilities it still writes what this
does not verify (the container's top folder, /dev's links, the bound files' modes). Needs this
process to read the engine's storage, mount and signal (root on the node, beside the engine);
elsewhere `supported()` is False and sandboxes are never reused. Left as a channel of a few
bits: which of the image's files the user could write outside the work tree (its home's start-up
files; the work tree is rewritten whole at every task's set-up) a previous user changed shows in
their change time and inode number, which no reset can set.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from envfarm.sandbox.layer_reset import (
    ImageView,
    NotRecyclable,
    apply_plan,
    digest,
    open_folder,
    plan_reset,
    readlink,
    verify_layer,
    walk,
)

if TYPE_CHECKING:
    from envfarm.sandbox.docker_backend import DockerSandbox

LAST_PID = 300  # the last process number a recycled sandbox's namespace says it handed out
RESET_TIMEOUT_S = 120.0  # past it the pool stops waiting and closes the sandbox (the walk then fails)

# The first command of the fresh session: no System V IPC object is left (header lines only).
IPC_CHECK = ('ipcrm --all 2>/dev/null; cat /proc/sysvipc/shm /proc/sysvipc/msg /proc/sysvipc/sem '
             '| grep -cv "^ *key" || true')

@dataclass
class PlacesState:
    """The container's writable places outside its root file system, as first handed out."""

    entries: dict[str, tuple] = field(default_factory=dict)


def supported() -> bool:
    """Whether this process can verify a reset: it reads the engine's storage and mounts."""
    return os.geteuid() == 0 and os.path.isdir("/proc/self/ns")


# -- the places outside the root file system -----------------------------------------------------

# Under the container's root: (folder, how deep to look). The cgroup tree's own
# mounts are read-only; only the tmpfs above them is looked at.
PLACES = (("dev", 8), ("sys/fs/cgroup", 1))


# The container's network namespace as its sockets and counters show it (no network but the
# loopback): sockets left waiting (TIME_WAIT holds chosen addresses for a minute) and counters
# a user sets at will are a channel to the next one, which no reset clears; any difference from
# the first state makes the sandbox not recyclable.
# (Not sockstat: its socket count and memory are the whole machine's, moving with every process.)
NET_FILES = ("tcp", "tcp6", "udp", "udp6", "raw", "raw6", "unix", "packet", "snmp", "snmp6", "netstat", "dev")


def places_state(root: int, files: dict[str, str], pid: int) -> PlacesState:
    """The writable places outside the root file system: entries under PLACES, seen from the
    container's root (`root`, see `container_root`) without following a link, with their type,
    mode, owner, device, size, bytes, link target and times; and the engine's files bound into
    the container (`files`: container path -> this machine's): their bytes, mode, owner and
    modification time."""
    state = PlacesState()
    for place, depth in PLACES:
        top = open_folder(root, place.split("/"))
        if top is None:
            raise NotRecyclable(f"/{place} is not a folder in the container")
        try:
            state.entries[place] = _entry(top, [], os.stat(top))
            for parts, st in walk(top):
                if len(parts) <= depth:
                    state.entries[place + "/" + "/".join(parts)] = _entry(top, parts, st)
        finally:
            os.close(top)
    for name in NET_FILES:
        try:
            with open(f"/proc/{pid}/net/{name}", "rb") as fh:
                state.entries[f"net/{name}"] = (hashlib.blake2b(fh.read(), digest_size=20).hexdigest(),)
        except FileNotFoundError:
            continue
    for inside, path in files.items():
        if path:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOATIME)
            with os.fdopen(fd, "rb") as fh:
                st = os.fstat(fh.fileno())
                state.entries[inside] = (hashlib.blake2b(fh.read(), digest_size=20).hexdigest(),
                                         st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
    return state


def _entry(top: int, parts: list[str], st: os.stat_result) -> tuple:
    """What a place's entry is: (mode, owner, group, device, size, bytes, link target, times)."""
    regular = stat.S_ISREG(st.st_mode)
    content = digest(top, parts, st) if regular and st.st_size < (1 << 20) else ""
    target = readlink(top, parts) if stat.S_ISLNK(st.st_mode) else ""
    return (st.st_mode, st.st_uid, st.st_gid, st.st_rdev, st.st_size if regular else 0, content, target,
            st.st_atime_ns, st.st_mtime_ns)


def put_back_times(root: int, first: PlacesState) -> None:
    """The first state's times on the places' entries (a user may set a writable device's times
    to now, `touch /dev/null`, and emptying /dev/shm sets its own)."""
    for key, entry in first.entries.items():
        if len(entry) != 9:
            continue  # an engine's bound file: compared, never written
        parts = key.split("/")
        parent = open_folder(root, parts[:-1])
        if parent is None:
            continue
        try:
            os.utime(parts[-1], ns=(entry[7], entry[8]), dir_fd=parent, follow_symlinks=False)
        except OSError:
            pass  # gone: the comparison says so
        finally:
            os.close(parent)


def container_root(pid: int, container_id: str) -> int:
    """A descriptor of the container's root folder, through its PID 1 (`pid`): every write and
    read of a reset starts there, never at /proc/<pid>/root again, so a PID 1 that dies and a
    number reused by a process of this machine can never turn them onto this machine's files.
    Opened while a pidfd shows that PID 1 alive and in the container's cgroup."""
    pidfd = os.pidfd_open(pid)
    try:
        root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            signal.pidfd_send_signal(pidfd, 0)  # still the process the pidfd names: the number is its
            if container_id not in _cgroup(pid):
                raise NotRecyclable("the container's PID 1 is not the process this machine sees")
        except BaseException:
            os.close(root)
            raise
        return root
    except ProcessLookupError as exc:
        raise NotRecyclable("the container's PID 1 is gone") from exc
    finally:
        os.close(pidfd)


def places_differ(before: PlacesState, after: PlacesState) -> str | None:
    """Which place differs from the first state (access times aside: the reset puts them back,
    and reading a place from here may move them)."""
    def seen(entry: tuple | None) -> tuple | None:
        return entry[:7] + entry[8:] if entry is not None and len(entry) == 9 else entry

    for key in sorted(set(before.entries) | set(after.entries)):
        if seen(before.entries.get(key)) != seen(after.entries.get(key)):
            return f"/{key} differs from the sandbox's first state"
    return None


def container_facts(info: dict[str, Any]) -> tuple[str, str, int, dict[str, str]]:
    """(upper directory, lower layers, PID 1's pid here, bound files) from `docker inspect`.

    The engine's pid is its own namespace's: where this process sees another (an engine in a
    sidecar container, on another machine) that number may be any process of ours. It is used
    only once /proc says that process lives in the container's cgroup, and the layer's folder
    exists here: else NotRecyclable, and sandboxes are never reused."""
    driver = info.get("GraphDriver") or {}
    data = driver.get("Data") or {}
    if driver.get("Name") != "overlay2" or not data.get("UpperDir") or not data.get("LowerDir"):
        raise NotRecyclable("the engine does not store this container as an overlay with its own layers")
    pid = int((info.get("State") or {}).get("Pid") or 0)
    if pid <= 0:
        raise NotRecyclable("the container does not run")
    container_id = info.get("Id") or ""
    try:
        cgroup = _cgroup(pid)
    except OSError as exc:
        raise NotRecyclable(f"the container's PID 1 is not visible from this process: {exc}") from exc
    if not container_id or container_id not in cgroup or not os.path.isdir(data["UpperDir"]):
        raise NotRecyclable("the container's processes and layers are not visible from this process "
                            "(an engine in another container or on another machine)")
    files = {"etc/hosts": info.get("HostsPath") or "", "etc/hostname": info.get("HostnamePath") or "",
             "etc/resolv.conf": info.get("ResolvConfPath") or ""}
    return data["UpperDir"], data["LowerDir"], pid, files


def container_procs(pid: int) -> list[int]:
    """The processes (host pids) in PID 1's cgroup: every process of the container is there."""
    base = _procs_file(pid)
    try:
        with open(base) as fh:
            return sorted(int(x) for x in fh.read().split())
    except OSError as exc:
        raise NotRecyclable(f"cannot list the container's processes: {exc}") from exc


def _cgroup(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as fh:
        lines = fh.read().splitlines()
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        if "pids" in controllers.split(",") or controllers == "":
            return rel
    raise NotRecyclable("the container's processes have no pids cgroup")


def _procs_file(pid: int) -> str:
    rel = _cgroup(pid)
    for base in (f"/sys/fs/cgroup/pids{rel}", f"/sys/fs/cgroup{rel}"):
        if os.path.exists(os.path.join(base, "cgroup.procs")):
            return os.path.join(base, "cgroup.procs")
    raise NotRecyclable("cannot find the container's cgroup on this machine")


def kill_all(pid: int, rounds: int = 200) -> bool:
    """SIGKILL every process of the container but PID 1 (`pid`), round after round until PID 1
    is alone; False if it never is. Each is signalled through a pidfd, which names that process
    and never a later one given its number, once it is seen in the container's cgroup still:
    never a process of this machine that happened to get a freed number."""
    home = _cgroup(pid)
    for _ in range(rounds):
        others = [p for p in container_procs(pid) if p != pid]
        if not others:
            return True
        for p in others:
            try:
                fd = os.pidfd_open(p)
            except OSError:
                continue  # gone already
            try:
                if _cgroup(p) == home:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            except (OSError, NotRecyclable):
                pass
            finally:
                os.close(fd)
        time.sleep(0.002)
    return False


def empty_folder(root: int, parts: list[str]) -> None:
    """Remove what a folder of the container holds (not the folder), no link followed; past a
    reset's bounds (entries, depth) NotRecyclable."""
    fd = open_folder(root, parts)
    if fd is None:
        return
    try:
        for _ in walk(fd):  # within the bounds before anything is removed
            pass
        for name in os.listdir(fd):
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
    except RecursionError as exc:
        raise NotRecyclable(f"/{'/'.join(parts)} is nested too deep to empty") from exc
    finally:
        os.close(fd)


def reset_counters(pid: int, container_id: str) -> None:
    """What the kernel counts for the container and its next user could read: the memory peak
    (written back to 0) and the last process number handed out (set to LAST_PID, from a process
    of this machine's in the container's PID namespace: `nsenter`), so that neither tells how much
    the previous user allocated or how many processes it started."""
    for line in _cgroup_lines(pid):
        _, controllers, rel = line.split(":", 2)
        if container_id not in rel:
            continue
        for name in ("memory/" + rel.lstrip("/") + "/memory.max_usage_in_bytes",
                     rel.lstrip("/") + "/memory.peak"):
            path = os.path.join("/sys/fs/cgroup", name)
            if ("memory" in controllers.split(",") or controllers == "") and os.path.exists(path):
                try:
                    with open(path, "w") as fh:
                        fh.write("0")
                except OSError:
                    pass
    res = subprocess.run(["nsenter", "-t", str(pid), "--pid", "--", "sh", "-c",
                          f"echo {LAST_PID} > /proc/sys/kernel/ns_last_pid"],
                         capture_output=True, text=True, timeout=10, check=False)
    if res.returncode != 0:
        raise NotRecyclable(f"cannot reset the container's last process number: {res.stderr.strip()[-200:]}")


def _cgroup_lines(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cgroup") as fh:
        return fh.read().splitlines()


def reaped(pid: int, wake: Callable[[], bool], wait_s: float = 3.0) -> bool:
    """Whether PID 1 (`pid`) has no child left, dead or alive, once woken (it reaps when it
    wakes: see PID1_SCRIPT); it never forks, so any child is one it adopted."""
    deadline = time.monotonic() + wait_s
    woken = False
    while True:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as fh:
                if not fh.read().split():
                    return True
        except OSError:
            return False
        if not woken:
            woken = wake()
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)


def reset_files(upper: str, lower: str, pid: int, container_id: str, files: dict[str, str],
                first: PlacesState, wake: Callable[[], bool]) -> None:
    """Steps 1 to 3 of the module's reset, in this thread; NotRecyclable when one fails.
    `wake`: wakes PID 1 so that it reaps the killed processes it adopted."""
    if not kill_all(pid) or not reaped(pid, wake):
        raise NotRecyclable("processes were left after the kill")
    root = container_root(pid, container_id)
    try:
        with ImageView(lower) as view:
            try:
                apply_plan(root, upper, view.path, plan_reset(upper, view.path))
                empty_folder(root, ["dev", "shm"])
                empty_folder(root, ["dev", "mqueue"])
                put_back_times(root, first)
            except OSError as exc:
                raise NotRecyclable(f"the restore failed: {exc}") from exc
            why = verify_layer(upper, view.path) or places_differ(first, places_state(root, files, pid))
            put_back_times(root, first)  # the verification's own reads moved the folders' access times
    finally:
        os.close(root)
    if why is None and (container_procs(pid) != [pid] or not reaped(pid, wake)):
        why = "a process appeared during the reset"
    if why is None:
        reset_counters(pid, container_id)
    if why is not None:
        raise NotRecyclable(f"after the reset {why}")


async def reset(sandbox: DockerSandbox, first: PlacesState) -> None:
    """Make `sandbox`'s files and processes what they were when first handed out, or raise
    NotRecyclable. Its shell session is closed first; the caller starts a new one."""
    from envfarm.sandbox import owner_lease
    from envfarm.sandbox.docker_backend import _in_thread

    await sandbox._session.close()
    info = await _in_thread(sandbox._api.inspect_container, sandbox.container.id)
    upper, lower, pid, files = container_facts(info)
    await _in_thread(reset_files, upper, lower, pid, sandbox.container.id, files, first,
                     lambda: owner_lease.poke(sandbox.container.id))
