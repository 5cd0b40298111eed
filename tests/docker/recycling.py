"""What a previous user of a recycled sandbox leaves behind, and how a test tells a recycled
sandbox from a fresh one (envfarm.sandbox.docker_recycle)."""

from __future__ import annotations

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
nohup sleep 100000 >/dev/null 2>&1 &
setsid bash -c 'while :; do echo alive >> /tmp/daemon; sleep 0.2; done' >/dev/null 2>&1 < /dev/null &
(cat /tmp/fifo >/dev/null &)
true
"""

# What a user sees of the sandbox: every path outside /proc, /sys and /dev with its type, mode,
# owner and size (files) or target (links); the bytes of every file it may read in the places
# users write (the engine's /etc/hosts and /etc/hostname name the container: left out); its
# /dev/shm and /dev/mqueue; System V IPC objects; how many processes run.
FINGERPRINT = r"""
find / -xdev \( -path /proc -o -path /sys -o -path /dev \) -prune -o -type f -printf '%p f %m %U %G %s\n' \
  -o ! -type f -printf '%p %y %m %U %G %l\n' 2>/dev/null | sort
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
