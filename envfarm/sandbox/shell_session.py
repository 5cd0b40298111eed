"""A persistent bash session inside a container, driven over one hijacked `docker exec` stream.

Why: one `docker exec` per command costs about 50 ms; one `bash` kept open and spoken to over
its stdin costs well under a millisecond a round trip, and keeps terminal state (`cd`,
exported variables) between commands as an agent expects.

Protocol: the shell runs a small driver loop. For each command the host writes the marker, a
newline, the command text and a NUL byte (bash strings cannot hold NUL, so a command cannot end
its own message early: NULs are dropped from it first); the driver reads the message with
`read -d ''` (never through argv), `eval`s the text after the first line with stdin from
/dev/null and stderr merged into stdout, and prints `\\n<marker> <exit code> <cwd>\\n`. The
marker is random per command, so a command's output cannot fake the end of another's.

Data: a message whose first line is `+<marker>` is followed by raw bytes, and its command (the
host's own, e.g. `head -c N > file`; see `exec_with_data`) runs with the session's stdin, so it
reads exactly those bytes. Only the host writes a message's first line, so a command of the
agent's always runs with stdin from /dev/null. (An
earlier protocol sent the byte length and read it with `read -N` under `LC_ALL=C`, whose
locale switch twice a command cost about 15% of a round trip.)

Timeouts: the host kills every process in the container except PID 1 and the session shell
(which also ends whatever the command left running in the background). If the shell itself is
stuck (a busy loop of builtins), it is replaced by a fresh session in the same directory and
the result says so.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
import time
from collections.abc import Awaitable, Callable

from envfarm.sandbox.base import ACTIVATE_PATH, ExecResult, SandboxError

DRIVER = r"""exec 2>&1
printf '__EF_READY__ %d\n' "$$"
while IFS= read -r -d '' __ef_msg; do
  __ef_mark=${__ef_msg%%$'\n'*}
  if [[ $__ef_mark == +* ]]; then __ef_mark=${__ef_mark#+}; eval "${__ef_msg#*$'\n'}"
  else eval "${__ef_msg#*$'\n'}" </dev/null; fi
  printf '\n%s %d %s\n' "$__ef_mark" "$?" "$PWD"
done
"""

# Kills every process but PID 1, the session shell ($1) and itself; repeated because a fork
# bomb can spawn between two passes.
KILL_SCRIPT = (
    'for _ in 1 2 3; do for d in /proc/[0-9]*; do p=${d#/proc/}; '
    '[ "$p" = 1 ] || [ "$p" = "$1" ] || [ "$p" = $$ ] || kill -9 "$p" 2>/dev/null; done; done; true'
)

STREAM_HEADER = struct.Struct(">BxxxL")


class _Demux:
    """Turns Docker's multiplexed exec stream (8-byte frame headers) into plain bytes."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        while len(self._buf) >= 8:
            _, size = STREAM_HEADER.unpack_from(self._buf)
            if len(self._buf) < 8 + size:
                break
            out += self._buf[8:8 + size]
            del self._buf[:8 + size]
        return bytes(out)


class _CappedBuffer:
    """Keeps the head and the tail of a stream, counting what was dropped in between.

    Everything stays in `tail` (where the end marker is searched) until the stream outgrows
    the limit; then the first half of the limit moves to `head` once and the middle is dropped.
    """

    def __init__(self, limit: int, keep_tail: int) -> None:
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit + keep_tail  # keep_tail: never cut the marker
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        self.tail += data
        if not self.head and len(self.tail) > self.head_limit + self.tail_limit:
            self.head += self.tail[:self.head_limit]
            del self.tail[:self.head_limit]
        excess = len(self.tail) - self.tail_limit
        if self.head and excess > 0:
            del self.tail[:excess]
            self.dropped += excess


def command_bytes(cmd: str) -> bytes:
    """A command's bytes for the driver: UTF-8, raw bytes kept (surrogateescape), a lone
    surrogate of any other kind (JSON's "\\ud800" decodes to one) as U+FFFD, never an encoding
    error that would end the episode as an infrastructure fault; NULs dropped (see the protocol)."""
    try:
        data = cmd.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:
        data = "".join("\ufffd" if "\ud800" <= c <= "\udfff" and not "\udc80" <= c <= "\udcff" else c
                       for c in cmd).encode("utf-8", errors="surrogateescape")
    return data.replace(b"\0", b"")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


class ShellSession:
    """One bash process in a container, spoken to over a raw exec socket.

    `open_exec` is given by the backend: it starts `bash` with stdin attached and returns the
    exec id and the raw socket; `run_detached` runs a short command in the container (used to
    kill processes on timeout); `exec_exit_code` reads an exec's exit status. `framed`: the
    socket carries Docker's multiplexed frames (False: plain bytes, as from a local process).
    """

    def __init__(
        self,
        open_exec: Callable[[], Awaitable[tuple[str, socket.socket]]],
        run_detached: Callable[[list[str]], Awaitable[None]],
        exec_exit_code: Callable[[str], Awaitable[int | None]],
        kill_grace: float = 3.0,
        framed: bool = True,
    ) -> None:
        self._open_exec = open_exec
        self._run_detached = run_detached
        self._exec_exit_code = exec_exit_code
        self._kill_grace = kill_grace
        self._framed = framed
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._exec_id = ""
        self._dead_exec = ""  # the exec of a shell that exited, to read its exit status
        self._demux = _Demux()
        self._pending = bytearray()  # demuxed bytes read but not yet consumed
        self.shell_pid = 0
        self.cwd: str | None = None
        self.restarts = 0
        self.last_ok = 0.0  # time.monotonic() of the last command that came back
        self._lock = asyncio.Lock()

    async def start(self, cwd: str | None = None) -> None:
        exec_id, raw = await self._open_exec()
        raw.setblocking(False)
        self._reader, self._writer = await asyncio.open_unix_connection(sock=raw, limit=1 << 20) \
            if raw.family == socket.AF_UNIX else await asyncio.open_connection(sock=raw, limit=1 << 20)
        self._exec_id = exec_id
        self._demux = _Demux()
        self._pending = bytearray()
        self._writer.write(DRIVER.encode())
        async with asyncio.timeout(30):
            line = await self._read_line()
        if not line.startswith(b"__EF_READY__ "):
            raise SandboxError(f"shell session did not start: {_decode(line)[:200]!r}")
        self.shell_pid = int(line.split()[1])
        # an adapted image's test environment (see envfarm.sandbox.foreign_images), then cwd
        setup = f"if [ -r {ACTIVATE_PATH} ]; then {{ . {ACTIVATE_PATH}; }} >/dev/null 2>&1 </dev/null; fi"
        await self._run(setup + (f"; cd {_quote(cwd)}" if cwd else ""), timeout=60, limit=4096)

    async def _fill(self) -> bool:
        assert self._reader is not None
        data = await self._reader.read(1 << 16)
        if not data:
            return False
        self._pending += self._demux.feed(data) if self._framed else data
        return True

    async def _read_line(self) -> bytes:
        while b"\n" not in self._pending:
            if not await self._fill():
                raise SandboxError("shell session closed before it was ready")
        idx = self._pending.index(b"\n")
        line = bytes(self._pending[:idx])
        del self._pending[:idx + 1]
        return line

    async def exec(self, cmd: str, timeout: float, limit: int) -> ExecResult:
        async with self._lock:
            if self._writer is None:
                await self.start(self.cwd)
            return await self._run(cmd, timeout, limit)

    async def exec_with_data(self, cmd: str, data: bytes, timeout: float, limit: int) -> ExecResult:
        """Run `cmd`, the host's own, with `data` on its stdin (it must read exactly len(data)
        bytes, e.g. `head -c N`): bytes into the container over the open stream, no process
        started by the engine. Never for an agent's command."""
        async with self._lock:
            if self._writer is None:
                await self.start(self.cwd)
            return await self._run(cmd, timeout, limit, data)

    async def _run(self, cmd: str, timeout: float, limit: int, data: bytes | None = None) -> ExecResult:
        assert self._writer is not None
        marker = f"__EF_END_{secrets.token_hex(8)}__"
        end = b"\n" + marker.encode() + b" "
        payload = command_bytes(cmd)
        started = time.perf_counter()
        buf = _CappedBuffer(limit, keep_tail=len(end) + 4096)
        if data is None:
            self._writer.write(marker.encode() + b"\n" + payload + b"\0")
        else:
            self._writer.write(b"+" + marker.encode() + b"\n" + payload + b"\0")
            self._writer.write(data)
        timed_out, note = False, ""
        # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancel that lands as it ends, and
        # its task of its own costs two more turns of the event loop on every command
        try:
            async with asyncio.timeout(timeout):
                status = await self._collect(buf, end)
        except TimeoutError:
            timed_out = True
            await self._run_detached(["sh", "-c", KILL_SCRIPT, "kill", str(self.shell_pid)])
            try:
                async with asyncio.timeout(self._kill_grace):
                    status = await self._collect(buf, end)
            except TimeoutError:
                status = None
                note = await self._restart("the command kept the shell itself busy")
        if status is None and not timed_out:
            note = await self._restart("the shell exited")
        exit_code: int | None = None
        if status is not None:
            exit_code, self.cwd = status
            self.last_ok = time.monotonic()
        elif note and not timed_out:
            exit_code = await self._exec_exit_code(self._dead_exec)
        out = bytes(buf.head)
        if buf.dropped:
            out += f"\n[... {buf.dropped} bytes of output cut ...]\n".encode()
        out += bytes(buf.tail)
        if timed_out:
            note = (f"command timed out after {timeout:g} s and was killed"
                    + (f"; {note}" if note else ""))
        return ExecResult(output=_decode(out), exit_code=exit_code, timed_out=timed_out,
                          truncated=buf.dropped > 0, seconds=time.perf_counter() - started,
                          note=note)

    async def _collect(self, buf: _CappedBuffer, end: bytes) -> tuple[int, str] | None:
        """Reads until the end marker; returns (exit code, cwd), or None if the shell died."""
        while True:
            if self._pending:
                buf.add(bytes(self._pending))
                self._pending.clear()
            idx = buf.tail.find(end)
            if idx >= 0:
                nl = buf.tail.find(b"\n", idx + len(end))
                if nl >= 0:
                    code, _, cwd = bytes(buf.tail[idx + len(end):nl]).partition(b" ")
                    rest = bytes(buf.tail[nl + 1:])
                    del buf.tail[idx:]
                    self._pending += rest
                    if not code.isdigit():  # the shell prints digits: a command forged this line
                        raise SandboxError("the session's end-of-command line was garbled by the command")
                    return int(code), _decode(cwd)
            if not await self._fill():
                return None

    async def _restart(self, why: str) -> str:
        self._dead_exec = self._exec_id
        await self.close()
        if why != "the shell exited":
            await self._run_detached(["sh", "-c", KILL_SCRIPT, "kill", "0"])
        self.restarts += 1
        await self.start(self.cwd)
        return f"{why}; a new shell session was started in {self.cwd or 'the default directory'} " \
               "(exported variables and shell functions were reset)"

    def is_open(self) -> bool:
        """The stream to the shell is still open (a dead container or engine closes it)."""
        return (self._writer is not None and not self._writer.is_closing()
                and self._reader is not None and not self._reader.at_eof())

    async def close(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - the socket may already be gone
                pass
        self._reader = self._writer = None


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"
