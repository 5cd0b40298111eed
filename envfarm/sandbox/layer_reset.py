"""An overlay container's writable layer against its image: walked, compared and given the image's
content back from this machine (see envfarm.sandbox.docker_recycle, which uses it for a reset).

Every walk opens folders by descriptor and never follows a link: the container's user made the
layer, and this process is root. The image is a read-only overlay of the container's own lower
layers mounted here (`ImageView`), so the kernel resolves the image's whiteouts and this code
only compares.
"""

from __future__ import annotations

import array
import ctypes
import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from envfarm.sandbox.base import SandboxError

# A reset's bounds (past any: NotRecyclable, the sandbox is closed): the agent decides how many,
# how deep and how large its files are, and each entry costs this process a few opens per level
MAX_ENTRIES = 200_000  # entries of the writable layer
MAX_DEPTH = 64  # folders from the root down to an entry
COMPARE_MAX = 512 << 20  # bytes of the layer's files read for a comparison
SLACK_BLOCKS = 16  # 512-byte blocks a copy may hold beyond the image's (file systems round differently)
ARCHIVE_MAX = 256 << 20  # bytes of the image's versions a reset writes back (past it: close the sandbox)
OVERLAY_XATTR = "trusted.overlay."


class NotRecyclable(SandboxError):
    """The reset could not be done or verified: the sandbox is closed, never reused."""


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
        sweep_stale_views()
        self.path = tempfile.mkdtemp(prefix=f"{VIEW_PREFIX}{time.time():.0f}-")
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
VIEW_PREFIX = "envfarm-image-view-"  # then the unix time it was mounted: a sweep can tell its age
VIEW_STALE_S = 600.0  # a reset takes at most RESET_TIMEOUT_S (120 s): older views were left behind
_last_sweep = 0.0


def sweep_stale_views(now: float | None = None) -> int:
    """Unmount and remove image views a reset left mounted (its process killed in the middle),
    once a minute at most per process; how many. Only views older than VIEW_STALE_S: another
    process's reset on this node may be using a younger one."""
    global _last_sweep
    now = time.time() if now is None else now
    if now - _last_sweep < 60.0:
        return 0
    _last_sweep = now
    swept = 0
    try:
        with open("/proc/self/mountinfo") as fh:
            points = [line.split()[4] for line in fh]
    except OSError:
        return 0
    for point in points:
        name = os.path.basename(point)
        if os.path.dirname(point) != tempfile.gettempdir() or not name.startswith(VIEW_PREFIX):
            continue
        try:
            mounted = float(name[len(VIEW_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if now - mounted > VIEW_STALE_S:
            _libc().umount2(point.encode(), MNT_DETACH)
            try:
                os.rmdir(point)
            except OSError:
                pass
            swept += 1
    return swept


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


# -- walking without following links ------------------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# reads that leave the access time alone (root may on any file): the agent's times are not
# mixed with ours, and the image's layers are not touched
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOATIME
# inode flags a file's owner may set (chattr: sync, noatime, nodump, dirsync, topdir, ...): a
# channel from one user of a sandbox to the next unless reset (FS_IOC_GETFLAGS / SETFLAGS)
FS_IOC_GETFLAGS, FS_IOC_SETFLAGS = 0x80086601, 0x40086602
OWNER_FLAGS = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x4000 | 0x8000 | 0x10000 | 0x20000 \
    | 0x800000 | 0x20000000


def open_folder(top: str | int, parts: list[str]) -> int | None:
    """A descriptor of the folder top/parts (no link followed, `top` a path whose last step is no
    link, or a folder's descriptor, which stays the caller's), or None where that is no folder."""
    try:
        fd = os.dup(top) if isinstance(top, int) else os.open(top, _DIR_FLAGS)
    except OSError:
        return None
    for name in parts:
        try:
            sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = sub
    return fd


def _lstat(top: str | int, parts: list[str]) -> os.stat_result | None:
    if not parts:
        return os.stat(top)
    fd = open_folder(top, parts[:-1])
    if fd is None:
        return None
    try:
        return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(fd)


def _xattrs(top: str | int, parts: list[str], st: os.stat_result) -> dict[str, bytes]:
    """Extended attributes but the overlay's own (links carry none a user may set here)."""
    if stat.S_ISLNK(st.st_mode):
        return {}
    fd = _open_entry(top, parts, st)
    try:
        return {n: os.getxattr(fd, n) for n in os.listxattr(fd) if not n.startswith(OVERLAY_XATTR)}
    finally:
        os.close(fd)


def _open_entry(top: str | int, parts: list[str], st: os.stat_result) -> int:
    if stat.S_ISDIR(st.st_mode):
        fd = open_folder(top, parts)
        if fd is None:
            raise NotRecyclable(f"/{'/'.join(parts)} changed while it was checked")
        return fd
    parent = open_folder(top, parts[:-1])
    if parent is None:
        raise NotRecyclable(f"/{'/'.join(parts)} changed while it was checked")
    try:
        return os.open(parts[-1], _READ_FLAGS, dir_fd=parent)
    finally:
        os.close(parent)


def digest(top: str | int, parts: list[str], st: os.stat_result) -> str:
    fd = _open_entry(top, parts, st)
    try:
        h = hashlib.blake2b(digest_size=20)
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def readlink(top: str | int, parts: list[str]) -> str:
    fd = open_folder(top, parts[:-1])
    if fd is None:
        raise NotRecyclable(f"/{'/'.join(parts)} changed while it was checked")
    try:
        return os.readlink(parts[-1], dir_fd=fd)
    finally:
        os.close(fd)


def _names(top: str | int, parts: list[str]) -> set[str]:
    fd = open_folder(top, parts)
    if fd is None:
        return set()
    try:
        return set(os.listdir(fd))
    finally:
        os.close(fd)


def walk(top: str | int, limit: int = MAX_ENTRIES) -> Iterator[tuple[list[str], os.stat_result]]:
    """Every entry under `top` (folders first), by descriptor, never following a link; at most
    `limit` entries, MAX_DEPTH deep and COMPARE_MAX bytes of files in all."""
    pending: list[list[str]] = [[]]
    seen = size = 0
    while pending:
        parts = pending.pop()
        fd = open_folder(top, parts)
        if fd is None:
            raise NotRecyclable(f"/{'/'.join(parts)} changed while it was walked")
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    seen += 1
                    size += st.st_size if stat.S_ISREG(st.st_mode) else 0
                    if seen > limit or len(parts) >= MAX_DEPTH or size > COMPARE_MAX:
                        raise NotRecyclable(f"the layer is past a reset's bounds ({limit} entries, {MAX_DEPTH} "
                                            f"folders deep, {COMPARE_MAX >> 20} MiB of files)")
                    yield [*parts, entry.name], st
                    if stat.S_ISDIR(st.st_mode):
                        pending.append([*parts, entry.name])
        finally:
            os.close(fd)


# -- comparing the writable layer with the image -------------------------------------------------

def _meta(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns


def _flags(top: str | int, parts: list[str], st: os.stat_result) -> int:
    """The owner-settable inode flags of a file or folder (0 where the file system has none)."""
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return 0
    fd = _open_entry(top, parts, st)
    try:
        return flags_of(fd)
    finally:
        os.close(fd)


def flags_of(fd: int) -> int:
    buf = array.array("l", [0])
    try:
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
    except OSError:
        return 0
    return buf[0] & 0xFFFFFFFF & OWNER_FLAGS


def set_flags(fd: int, flags: int) -> None:
    """Give a file or folder these owner-settable flags, keeping its others."""
    buf = array.array("l", [0])
    try:
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
    except OSError:
        return
    want = (buf[0] & 0xFFFFFFFF & ~OWNER_FLAGS) | flags
    if want != buf[0] & 0xFFFFFFFF:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, array.array("l", [want]))


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
    if stat.S_ISDIR(st.st_mode):  # first: whether its listing is the layer's alone, for its entries too
        fd = open_folder(upper, parts)
        if fd is None:
            return f"{path} changed while it was checked"
        try:
            opaque = read_xattr(fd, "trusted.overlay.opaque") == b"y"
            redirect = read_xattr(fd, "trusted.overlay.redirect") is not None
        finally:
            os.close(fd)
        if redirect:
            return f"{path} is a renamed folder"
        if opaque or "/" + "/".join(parts[:-1]) in sealed:
            sealed.add(path)
            if _names(upper, parts) != _names(image, parts):
                return f"{path}: its entries differ from the image's"
        if st.st_size > max(img.st_size, 4096) or st.st_blocks > img.st_blocks + SLACK_BLOCKS:
            # a folder never shrinks on ext4: its size tells how many entries it once held
            return f"{path}: its entries differ from the image's (a folder grown past the image's size)"
    if _meta(st) != _meta(img):
        return f"{path}: mode, owner or modification time differ from the image's"
    if stat.S_ISREG(st.st_mode):
        if st.st_nlink != 1:
            return f"{path} is hard-linked"
        if st.st_size != img.st_size or digest(upper, parts, st) != digest(image, parts, img):
            return f"{path}: content differs from the image's"
        if st.st_blocks > img.st_blocks + SLACK_BLOCKS:  # fallocate(KEEP_SIZE): disk no size shows
            return f"{path}: holds more disk space than the image's"
    elif stat.S_ISLNK(st.st_mode):
        if readlink(upper, parts) != readlink(image, parts):
            return f"{path}: link target differs from the image's"
    elif not stat.S_ISDIR(st.st_mode):
        return f"{path} is a device, socket or pipe"
    if _xattrs(upper, parts, st) != _xattrs(image, parts, img):
        return f"{path}: extended attributes differ from the image's"
    if _flags(upper, parts, st) != _flags(image, parts, img):
        return f"{path}: inode flags differ from the image's"
    return None


def read_xattr(fd: int, name: str) -> bytes | None:
    """An extended attribute of the open file `fd`, or None where it has none (or it cannot be read)."""
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
    skip: set[str] = set()  # subtrees already removed and restored whole
    sealed: set[str] = set()
    for parts, st in sorted(walk(upper), key=lambda e: e[0]):
        path = "/" + "/".join(parts)
        if any("/" + "/".join(parts[:i]) in skip for i in range(1, len(parts) + 1)):
            continue
        why = differs(upper, image, parts, st, sealed)
        if why is None:
            continue
        img = _lstat(image, parts)
        if img is None:
            plan.remove.append(path)
            skip.add(path)
        elif stat.S_ISDIR(img.st_mode) and stat.S_ISDIR(st.st_mode) and "entries differ" not in why:
            plan.restore.append(parts)  # the folder's own metadata; its entries are looked at one by one
        else:
            plan.remove.append(path)
            plan.restore.append(parts)
            skip.add(path)
    return plan


def apply_plan(root: int, upper: str, image: str, plan: Plan) -> None:
    """Carry out `plan` in the container through `root` (a descriptor of its root folder): remove, then write
    the image's versions (a removed folder with its whole subtree) with their owner, mode,
    extended attributes, inode flags and times; then every entry of the layer gets the image's
    access and modification times. No step follows a link: no process of the container runs."""
    for path in plan.remove:
        parts = path.strip("/").split("/")
        parent = open_folder(root, parts[:-1])
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
    for parts in plan.restore:
        st = _lstat(image, parts)
        if st is None:
            continue
        _put(root, image, parts, st, budget)
        if stat.S_ISDIR(st.st_mode) and "/" + "/".join(parts) in removed:
            for sub, sst in walk(os.path.join(image, *parts)):  # the image's view: this machine's mount
                _put(root, image, [*parts, *sub], sst, budget)
    set_times(root, upper, image)  # last: every entry's times, folders after their entries


def _put(root: int, image: str, parts: list[str], st: os.stat_result, budget: list[int]) -> None:
    """Write the image's version of one entry (its times come after, from `set_times`)."""
    parent = open_folder(root, parts[:-1])
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
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(readlink(image, parts), name, dir_fd=parent)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=parent, follow_symlinks=False)
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
        set_flags(fd, _flags(image, parts, st))
    finally:
        os.close(fd)


def set_times(root: int, upper: str, image: str) -> None:
    """Give every entry of the writable layer the image's access and modification times (the
    agent's own, `touch -d`, carry whatever it chose to the next user)."""
    for parts, _ in sorted(walk(upper), key=lambda e: len(e[0]), reverse=True):  # folders after their entries
        img = _lstat(image, parts)
        if img is None:
            continue
        parent = open_folder(root, parts[:-1])
        if parent is None:
            continue
        try:
            os.utime(parts[-1], ns=(img.st_atime_ns, img.st_mtime_ns), dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            pass
        finally:
            os.close(parent)


def verify_layer(upper: str, image: str) -> str | None:
    """Why the writable layer is not the image's (None: every entry is)."""
    sealed: set[str] = set()
    for parts, st in walk(upper):
        why = differs(upper, image, parts, st, sealed)
        if why is not None:
            return why
    return None
