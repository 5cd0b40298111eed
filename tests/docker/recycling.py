"""What a previous user of a recycled sandbox leaves behind, and how a test tells a recycled
sandbox from a fresh one (envfarm.sandbox.docker_recycle)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox

# An episode that touches everything a user may touch in its sandbox: the repository (edits,
# a deleted file, a changed mode, a link out, a new folder, an extended attribute, a hard link
# to a file elsewhere, .git emptied), its home (a planted sitecustomize, shell start-up files),
# /tmp, /dev/shm, System V and POSIX IPC, and processes that outlive it (a nohup'd one, a
# daemon in its own session that keeps writing, a FIFO reader).
DIRTY_EPISODE = r"""
cd /testbed
echo '# edited by the previous episode' >> inflection/__init__.py
rm -f README.rst; chmod 600 setup.py; ln -sf /etc/passwd inflection/link_out
mkdir -p newdir/sub && echo planted > newdir/sub/f
python3 -c "import os; os.setxattr('setup.py', 'user.note', b'previous')" 2>/dev/null
ln inflection/__init__.py /tmp/hard_link 2>/dev/null
rm -rf .git/objects/* 2>/dev/null
site=$(python3 -c 'import site; print(site.getusersitepackages())') && mkdir -p "$site" &&
  echo 'print("PLANTED")' > "$site/sitecustomize.py"
echo 'echo PLANTED' >> ~/.bashrc; echo secret > /tmp/secret; echo x > /var/tmp/x 2>/dev/null
echo shm > /dev/shm/left; ipcmk -M 4096 >/dev/null; ipcmk -Q >/dev/null
python3 -c "import ctypes, os; rt = ctypes.CDLL('librt.so.1')
rt.mq_open(b'/left', os.O_CREAT | os.O_RDWR, 0o600, None)" 2>/dev/null
mkfifo /tmp/fifo
touch -d '2001-02-03 04:05:06.123456789' setup.py inflection/__init__.py inflection ~/.bashrc /testbed
touch -a -d '2001-02-03 04:05:06.987654321' tox.ini 2>/dev/null
python3 - <<'PY' 2>/dev/null
import array, fcntl, os
for path, flags in (("/testbed/setup.py", 0x80 | 0x40 | 0x8), ("/testbed/inflection", 0x10000 | 0x20000)):
    fd = os.open(path, os.O_RDONLY)
    buf = array.array("l", [0]); fcntl.ioctl(fd, 0x80086601, buf, True)
    fcntl.ioctl(fd, 0x40086602, array.array("l", [buf[0] | flags])); os.close(fd)
PY
touch /dev/null /dev/zero /dev/ptmx 2>/dev/null
(for i in $(seq 40); do sleep 1000 & done) >/dev/null 2>&1
nohup sleep 100000 >/dev/null 2>&1 &
setsid bash -c 'while :; do echo alive >> /tmp/daemon; sleep 0.2; done' >/dev/null 2>&1 < /dev/null &
(cat /tmp/fifo >/dev/null &)
true
"""

# What a user sees of the sandbox: every path outside /proc, /sys and /dev with its type, mode,
# owner, modification time and size (files) or target (links); the bytes of every file it may
# read in the places users write (the engine's /etc/hosts and /etc/hostname name the container:
# left out, as the times of what the engine makes with each container); the inode flags there;
# its /dev/shm and /dev/mqueue; System V IPC objects; how many processes run.
FINGERPRINT = r"""
find / -mindepth 1 -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /etc/hosts -o -path /etc/hostname \
  -o -path /etc/resolv.conf \) -prune -o -type f -printf '%p f %m %U %G %s %T@\n' \
  -o ! -type f -printf '%p %y %m %U %G %l %T@\n' 2>/dev/null | sort \
  | sed -E 's#^(/\.dockerenv|/etc|/etc/mtab) (.*) [0-9.]+$#\1 \2 (made with the container)#'
python3 - <<'PY'
import array, fcntl, os
for top in ("/testbed", "/tmp", os.path.expanduser("~")):
    for base, dirs, files in os.walk(top):
        for name in sorted(dirs + files):
            path = os.path.join(base, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            buf = array.array("l", [0])
            try:
                fcntl.ioctl(fd, 0x80086601, buf, True)
                print("flags", path, hex(buf[0] & 0x2083C1FF))
            except OSError:
                pass
            os.close(fd)
PY
find /testbed /tmp /var/tmp /home /root /etc /usr/local /usr/bin /opt -xdev -type f -readable \
  ! -path /etc/hostname ! -path /etc/hosts -exec md5sum {} + 2>/dev/null | sort
ls -la --time-style=+ /dev/shm /dev/mqueue | sed 's/  */ /g'
cat /proc/sysvipc/shm /proc/sysvipc/msg /proc/sysvipc/sem | grep -v '^ *key' || true
n=0; for p in /proc/[0-9]*; do n=$((n + 1)); done; echo "processes: $n"
"""


async def fingerprint(sandbox) -> str:
    res = await sandbox.exec(FINGERPRINT, timeout=120, output_limit=64 << 20)
    assert not res.truncated
    return res.output


@contextlib.asynccontextmanager
async def pristine_sandbox(spec: SandboxSpec, run: str = "test-recycle") -> AsyncIterator[DockerSandbox]:
    """A fresh sandbox with its first state recorded (so it can be recycled), always closed."""
    sandbox = await DockerSandbox.create(spec, run=run)
    try:
        assert await sandbox.mark_pristine()
        yield sandbox
    finally:
        await sandbox.close()


async def used_and_recycled(spec: SandboxSpec, episode: str = DIRTY_EPISODE, task_id: str = "") -> DockerSandbox:
    """A sandbox that served one dirty episode, then was recycled (raises if it cannot be)."""
    sandbox = await DockerSandbox.create(spec, run="tests", task=task_id)
    try:
        assert await sandbox.mark_pristine()
        await sandbox.exec(episode, timeout=60)
        await sandbox.recycle()
    except BaseException:
        await sandbox.close()
        raise
    return sandbox


async def recycled_factory(spec: SandboxSpec, task_id: str = "") -> DockerSandbox:
    """A SandboxFactory whose every sandbox is a recycled one: what a pool hands out after the
    first episode of an image."""
    return await used_and_recycled(spec, task_id=task_id)
