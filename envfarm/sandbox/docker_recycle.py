"""Recycling a Docker sandbox for the next episode of its image: a reset, then a verification.

A container start costs about 0.25 s of the machine's CPU whatever its flags; below that floor
only reuse helps. A sandbox an agent (or a grading run's code under test) used goes back to its
image's warm queue only when nothing that happened in it can be seen by the next user. All of
the reset is done from this machine, none of it by the container's own tools:

1. every process but PID 1 is killed: the processes in the container's cgroup, each through a
   pidfd (its number cannot be reused meanwhile) checked to be in that cgroup still, round after
   round until PID 1 is alone (a fork bomb refills between rounds; the pids limit bounds it);
2. the writable layer (the overlay's upper directory) is walked, by descriptor, never following
   a link, and compared with the image: a read-only overlay of the container's own lower layers
   mounted here (`ImageView`), so the kernel resolves the image's whiteouts and this code only
   compares. Through PID 1's root (`/proc/<pid>/root`, every step opened without following a
   link) paths the image lacks are removed and the image's version of every other changed path
   is written back with its owner, mode, extended attributes and times; /dev/shm and
   /dev/mqueue are emptied;
3. the verification, from the layer alone: every entry of the writable layer must equal the
   image's (type, mode, owner, size, bytes, link target, extended attributes), with no whiteout,
   no hard link, no device and no entry the image lacks, and a folder whose listing is the
   layer's own (opaque, or below one) must hold exactly the image's names; the container's other
   writable places (its /dev tree, the top of /sys/fs/cgroup, /etc/hosts, /etc/hostname,
   /etc/resolv.conf) must equal their state when the sandbox was first handed out, and PID 1
   must still be alone;
4. a fresh shell session starts (the one command the engine runs for a reset) and removes and
   checks System V IPC objects, with the tools just verified.

A sandbox that fails any step is closed as any used sandbox, and a fresh one takes its place.
Needs this process to read the engine's storage, mount and signal (root on the node, as the
fork's upper-directory walk); elsewhere `supported()` is False and sandboxes are never reused.
Not restored: change times and inode numbers (a restored file is a new file with the image's
bytes and metadata), which carry nothing of any task.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from envfarm.sandbox.base import SandboxError

if TYPE_CHECKING:
    from envfarm.sandbox.docker_backend import DockerSandbox

# The first command of the fresh session: no System V IPC object is left (header lines only).
IPC_CHECK = ('ipcrm --all 2>/dev/null; cat /proc/sysvipc/shm /proc/sysvipc/msg /proc/sysvipc/sem '
             '| grep -cv "^ *key" || true')

MAX_ENTRIES = 200_000  # entries of the writable layer a reset handles (past it: close the sandbox)
ARCHIVE_MAX = 256 << 20  # bytes of the image's versions a reset writes back (past it: close the sandbox)
OVERLAY_XATTR = "trusted.overlay."


class NotRecyclable(SandboxError):
    """The reset could not be done or verified: the sandbox is closed, never reused."""


@dataclass
class PlacesState:
    """The container's writable places outside its root file system, as first handed out."""

    entries: dict[str, tuple] = field(default_factory=dict)


def supported() -> bool:
    """Whether this process can verify a reset: it reads the engine's storage and mounts."""
    return os.geteuid() == 0 and os.path.isdir("/proc/self/ns")


# -- the image as a read-only overlay ----------------------------------------------------------

class ImageView:
    """The container's lower layers (its init layer and the image's) mounted read-only here."""

    def __init__(self, lower: str) -> None:
        self.lower = lower
        self.path = ""
        self._empty = ""

    def __enter__(self) -> ImageView:
        layers = self.lower.split(":")
        if len(layers) < 2:  # overlay mounts without an upper layer only over two lower ones
            self._empty = tempfile.mkdtemp(prefix="envfarm-empty-layer-")
            layers.append(self._empty)
        opts = ("lowerdir=" + ":".join(layers)).encode()
        if len(opts) > 4000:  # one page of mount options
            raise NotRecyclable("the image has too many layers to mount its view in one option string")
        self.path = tempfile.mkdtemp(prefix="envfarm-image-")
        if _libc().mount(b"overlay", self.path.encode(), b"overlay", MS_RDONLY, opts) != 0:
            err = ctypes.get_errno()
            self._cleanup()
            raise NotRecyclable(f"cannot mount the image's view: {os.strerror(err)}")
        return self

    def __exit__(self, *exc: object) -> None:
        _libc().umount2(self.path.encode(), MNT_DETACH)
        self._cleanup()

    def _cleanup(self) -> None:
        for folder in (self.path, self._empty):
            if folder:
                try:
                    os.rmdir(folder)
                except OSError:
                    pass


MS_RDONLY, MNT_DETACH = 1, 2


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


# -- walking without following links ------------------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_parts(top: str, parts: list[str]) -> int | None:
    """A descriptor of the folder top/parts (no link followed), or None where that is no folder."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for name in parts:
        try:
            sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = sub
    return fd


def _lstat(top: str, parts: list[str]) -> os.stat_result | None:
    if not parts:
        return os.stat(top)
    fd = _open_parts(top, parts[:-1])
    if fd is None:
        return None
    try:
        return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(fd)


def _xattrs(top: str, parts: list[str], st: os.stat_result) -> dict[str, bytes]:
    """Extended attributes but the overlay's own (links carry none a user may set here)."""
    if stat.S_ISLNK(st.st_mode):
        return {}
    fd = _open_entry(top, parts, st)
    try:
        return {n: os.getxattr(fd, n) for n in os.listxattr(fd) if not n.startswith(OVERLAY_XATTR)}
    finally:
        os.close(fd)


def _open_entry(top: str, parts: list[str], st: os.stat_result) -> int:
    if stat.S_ISDIR(st.st_mode):
        fd = _open_parts(top, parts)
        if fd is None:
            raise NotRecyclable(f"/{'/'.join(parts)} changed while it was checked")
        return fd
    parent = _open_parts(top, parts[:-1])
    if parent is None:
        raise NotRecyclable(f"/{'/'.join(parts)} changed while it was checked")
    try:
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=parent)
    finally:
        os.close(parent)


def _digest(top: str, parts: list[str], st: os.stat_result) -> str:
    fd = _open_entry(top, parts, st)
    try:
        h = hashlib.blake2b(digest_size=20)
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def _readlink(top: str, parts: list[str]) -> str:
    fd = _open_parts(top, parts[:-1])
    if fd is None:
        raise NotRecyclable(f"/{'/'.join(parts)} changed while it was checked")
    try:
        return os.readlink(parts[-1], dir_fd=fd)
    finally:
        os.close(fd)


def _names(top: str, parts: list[str]) -> set[str]:
    fd = _open_parts(top, parts)
    if fd is None:
        return set()
    try:
        return set(os.listdir(fd))
    finally:
        os.close(fd)


def walk(top: str, limit: int = MAX_ENTRIES) -> Iterator[tuple[list[str], os.stat_result]]:
    """Every entry under `top` (folders first), by descriptor, never following a link."""
    pending: list[list[str]] = [[]]
    seen = 0
    while pending:
        parts = pending.pop()
        fd = _open_parts(top, parts)
        if fd is None:
            raise NotRecyclable(f"/{'/'.join(parts)} changed while it was walked")
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    seen += 1
                    if seen > limit:
                        raise NotRecyclable(f"the writable layer holds more than {limit} entries")
                    yield [*parts, entry.name], st
                    if stat.S_ISDIR(st.st_mode):
                        pending.append([*parts, entry.name])
        finally:
            os.close(fd)


# -- comparing the writable layer with the image -------------------------------------------------

def _meta(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_mode, st.st_uid, st.st_gid


def differs(upper: str, image: str, parts: list[str], st: os.stat_result, sealed: set[str]) -> str | None:
    """Why the upper entry at `parts` is not the image's (None: it is). `sealed`: the folders
    whose listing is the upper directory's alone (opaque, or below an opaque one: the image's
    entries do not show through them); a sealed folder is added to it here."""
    path = "/" + "/".join(parts)
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return f"{path} is deleted"
    img = _lstat(image, parts)
    if img is None:
        return f"{path} is not in the image"
    if _meta(st) != _meta(img):
        return f"{path}: mode or owner differ from the image's"
    if stat.S_ISREG(st.st_mode):
        if st.st_nlink != 1:
            return f"{path} is hard-linked"
        if st.st_size != img.st_size or _digest(upper, parts, st) != _digest(image, parts, img):
            return f"{path}: content differs from the image's"
    elif stat.S_ISLNK(st.st_mode):
        if _readlink(upper, parts) != _readlink(image, parts):
            return f"{path}: link target differs from the image's"
    elif stat.S_ISDIR(st.st_mode):
        fd = _open_parts(upper, parts)
        if fd is None:
            return f"{path} changed while it was checked"
        try:
            opaque = _getxattr(fd, "trusted.overlay.opaque") == b"y"
            redirect = _getxattr(fd, "trusted.overlay.redirect") is not None
        finally:
            os.close(fd)
        if redirect:
            return f"{path} is a renamed folder"
        if opaque or "/" + "/".join(parts[:-1]) in sealed:
            sealed.add(path)
            if _names(upper, parts) != _names(image, parts):
                return f"{path}: its entries differ from the image's"
    else:
        return f"{path} is a device, socket or pipe"
    if _xattrs(upper, parts, st) != _xattrs(image, parts, img):
        return f"{path}: extended attributes differ from the image's"
    return None


def _getxattr(fd: int, name: str) -> bytes | None:
    try:
        return os.getxattr(fd, name)
    except OSError:
        return None


@dataclass
class Plan:
    """What a reset does: paths to remove, then the image's versions of paths to put back."""

    remove: list[str] = field(default_factory=list)
    restore: list[list[str]] = field(default_factory=list)  # each with its whole subtree where a folder


def plan_reset(upper: str, image: str) -> Plan:
    """The removals and restores that make the writable layer the image's."""
    plan = Plan()
    skip: list[str] = []  # subtrees already removed and restored whole
    sealed: set[str] = set()
    for parts, st in sorted(walk(upper), key=lambda e: e[0]):
        path = "/" + "/".join(parts)
        if any(path == s or path.startswith(s + "/") for s in skip):
            continue
        why = differs(upper, image, parts, st, sealed)
        if why is None:
            continue
        img = _lstat(image, parts)
        if img is None:
            plan.remove.append(path)
            skip.append(path)
        elif stat.S_ISDIR(img.st_mode) and stat.S_ISDIR(st.st_mode) and "entries differ" not in why:
            plan.restore.append(parts)  # the folder's own metadata; its entries are looked at one by one
        else:
            plan.remove.append(path)
            plan.restore.append(parts)
            skip.append(path)
    return plan


def apply_plan(root: str, image: str, plan: Plan) -> None:
    """Carry out `plan` in the container through `root` (PID 1's root here): remove, then write
    the image's versions (a removed folder with its whole subtree) with their owner, mode,
    extended attributes and times. No step follows a link: no process of the container runs."""
    for path in plan.remove:
        parts = path.strip("/").split("/")
        parent = _open_parts(root, parts[:-1])
        if parent is None:
            continue  # a folder above it is gone already
        try:
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(parts[-1], dir_fd=parent)
            else:
                os.unlink(parts[-1], dir_fd=parent)
        except FileNotFoundError:
            pass
        finally:
            os.close(parent)
    removed = set(plan.remove)
    budget = [ARCHIVE_MAX]
    folders: list[tuple[list[str], os.stat_result]] = []
    for parts in plan.restore:
        st = _lstat(image, parts)
        if st is None:
            continue
        _put(root, image, parts, st, budget, folders)
        if stat.S_ISDIR(st.st_mode) and "/" + "/".join(parts) in removed:
            for sub, sst in walk(os.path.join(image, *parts)):  # the image's view: this machine's mount
                _put(root, image, [*parts, *sub], sst, budget, folders)
    for parts, st in reversed(folders):  # a folder's time once its entries are written
        fd = _open_parts(root, parts)
        if fd is not None:
            try:
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)


def _put(root: str, image: str, parts: list[str], st: os.stat_result, budget: list[int],
         folders: list[tuple[list[str], os.stat_result]]) -> None:
    parent = _open_parts(root, parts[:-1])
    if parent is None:
        raise NotRecyclable(f"/{'/'.join(parts[:-1])} is missing while the image's version is put back")
    name = parts[-1]
    try:
        if stat.S_ISDIR(st.st_mode):
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                pass
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            folders.append((parts, st))
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(_readlink(image, parts), name, dir_fd=parent)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=parent, follow_symlinks=False)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=parent, follow_symlinks=False)
            return
        elif stat.S_ISREG(st.st_mode):
            budget[0] -= st.st_size
            if budget[0] < 0:
                raise NotRecyclable(f"the image's versions of the changed paths exceed {ARCHIVE_MAX >> 20} MiB")
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=parent)
            src = _open_entry(image, parts, st)
            try:
                while chunk := os.read(src, 1 << 20):
                    os.write(fd, chunk)
            finally:
                os.close(src)
        else:
            return  # no user makes devices, sockets or pipes: the verification says so
    finally:
        os.close(parent)
    try:
        os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after the owner: chown clears set-id bits
        have = {n for n in os.listxattr(fd) if not n.startswith(OVERLAY_XATTR)}
        want = _xattrs(image, parts, st)
        for n in have - set(want):
            os.removexattr(fd, n)
        for n, v in want.items():
            os.setxattr(fd, n, v)
        if not stat.S_ISDIR(st.st_mode):
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(fd)


def verify_layer(upper: str, image: str) -> str | None:
    """Why the writable layer is not the image's (None: every entry is)."""
    sealed: set[str] = set()
    for parts, st in walk(upper):
        why = differs(upper, image, parts, st, sealed)
        if why is not None:
            return why
    return None


# -- the places outside the root file system -----------------------------------------------------

# Under the container's root as PID 1 sees it: (folder, how deep to look). The cgroup tree's own
# mounts are read-only; only the tmpfs above them is looked at.
PLACES = (("dev", 8), ("sys/fs/cgroup", 1))


def places_state(pid: int, files: dict[str, str]) -> PlacesState:
    """The writable places outside the root file system: entries under PLACES, seen through PID
    1's root without following a link, and the digests of the engine's files bound into the
    container (`files`: container path -> this machine's path)."""
    state = PlacesState()
    root = f"/proc/{pid}/root"
    for place, depth in PLACES:
        top = os.path.join(root, place)
        for parts, st in walk(top):
            if len(parts) > depth:
                continue
            key = place + "/" + "/".join(parts)
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            digest = _digest(top, parts, st) if stat.S_ISREG(st.st_mode) and st.st_size < (1 << 20) else ""
            state.entries[key] = (st.st_mode, st.st_uid, st.st_gid, st.st_rdev, size, digest)
    for inside, path in files.items():
        if path:
            with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as fh:
                state.entries[inside] = (hashlib.blake2b(fh.read(), digest_size=20).hexdigest(),)
    return state


def places_differ(before: PlacesState, after: PlacesState) -> str | None:
    for key in sorted(set(before.entries) | set(after.entries)):
        if before.entries.get(key) != after.entries.get(key):
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
    is alone; False if it never is. Each is signalled through a pidfd, which pins its number,
    once it is seen in the container's cgroup still: never a process of this machine that
    happened to get a freed number."""
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


def empty_folder(root: str, parts: list[str]) -> None:
    """Remove what a folder of the container holds (not the folder), no link followed."""
    fd = _open_parts(root, parts)
    if fd is None:
        return
    try:
        for name in os.listdir(fd):
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


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


def reset_files(upper: str, lower: str, pid: int, files: dict[str, str], first: PlacesState,
                wake: Callable[[], bool]) -> None:
    """Steps 1 to 3 of the module's reset, in this thread; NotRecyclable when one fails.
    `wake`: wakes PID 1 so that it reaps the killed processes it adopted."""
    if not kill_all(pid) or not reaped(pid, wake):
        raise NotRecyclable("processes were left after the kill")
    root = f"/proc/{pid}/root"
    with ImageView(lower) as view:
        try:
            apply_plan(root, view.path, plan_reset(upper, view.path))
            empty_folder(root, ["dev", "shm"])
            empty_folder(root, ["dev", "mqueue"])
        except OSError as exc:
            raise NotRecyclable(f"the restore failed: {exc}") from exc
        why = verify_layer(upper, view.path) or places_differ(first, places_state(pid, files))
    if why is None and (container_procs(pid) != [pid] or not reaped(pid, wake)):
        why = "a process appeared during the reset"
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
    await _in_thread(reset_files, upper, lower, pid, files, first,
                     lambda: owner_lease.poke(sandbox.container.id))
