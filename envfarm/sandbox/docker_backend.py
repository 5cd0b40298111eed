"""Docker sandboxes: one locked-down container per sandbox, one persistent shell in it.

Containers run with no network, CPU/memory/pids limits, the agent's commands as SandboxSpec.user
(PID 1 alone as root, see PID1_SCRIPT), no-new-privileges and no capabilities, no host path but a
hosts file of its own, read-only (see envfarm.sandbox.no_network), and no Docker socket. The host's own
commands in a sandbox (`host_exec`) never go through the agent's shell session. A command that
runs into a limit says which in `ExecResult.limit` (memory and pids from the container's cgroup
counters, disk from a watchdog on the writable layer: see SandboxSpec.disk). Labels name the
owner and run so that orphans can be found and reaped by anyone (`envfarm.gc`) without a
registry of our own: the engine is the registry. A sandbox never outlives its owner for long:
it removes itself a grace period after the process that created it is gone, and after a hard
maximum lifetime in any case (see `envfarm.sandbox.owner_lease` and PID1_SCRIPT).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import logging
import os
import socket
import tarfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import requests

from envfarm.sandbox import no_network, owner_lease
from envfarm.sandbox.base import (
    DEFAULT_OUTPUT_LIMIT,
    HOST_PATH,
    ExecResult,
    FileTooLargeError,
    HostResult,
    ImageMissingError,
    Sandbox,
    SandboxBackend,
    SandboxBrokenError,
    SandboxError,
    SandboxFactory,
    SandboxSpec,
    parse_size,
)
from envfarm.sandbox.shell_session import KILL_SCRIPT, STREAM_HEADER, ShellSession

if TYPE_CHECKING:
    from envfarm.sandbox.backends import DockerBackendConfig

log = logging.getLogger(__name__)

# write_file: files go through the shell session as the sandbox's user, in chunks of this size
SESSION_WRITE_MAX = 256 << 10
# read_file: past this size a file is refused before any byte of it is transferred (the host that
# reads it serves every sandbox on its node)
READ_FILE_MAX = 32 << 20
WRITE_HEREDOC = "EOF_ENVFARM_WRITE"  # never in base64 text (no underscore in its alphabet)

LABEL = "envfarm"  # every container the project starts carries this label
LABEL_OWNER = "envfarm.owner"
LABEL_RUN = "envfarm.run"
LABEL_TASK = "envfarm.task"
LABEL_CREATED = "envfarm.created"

# cgroup counters of the container (v1 paths, then v2), read with bash builtins only: after a
# fork bomb there may be no process slot for `cat`.
COUNTERS = (
    'for f in /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/pids/pids.events '
    '/sys/fs/cgroup/memory.events; do [ -r "$f" ] && while read -r k v; do echo "$k $v"; done < "$f"; done; true'
)

# PID 1 of a sandbox runs as nobody (PID1_USER), the commands as SandboxSpec.user: a process of
# another user can neither signal nor ptrace it. It handles no signal, and in a PID namespace the
# kernel drops every signal its init has no handler for, even from root inside the container:
# `kill -TERM 1`, `kill -9 1`, `kill -STOP 1` do nothing. It never forks, so exhausting the pids
# limit or killing its children cannot make it exit either. It reaps the orphans it adopts (each a
# zombie holding a slot of the pids limit until then) with `wait` whenever it wakes: at least every
# 10 seconds, and at once on any line from its owner but `bye` (owner_lease.poke).
#
# It also ends the sandbox when nobody owns it any more (see envfarm.sandbox.owner_lease): it
# blocks reading its stdin, which the owner holds over an attach connection, and exits (the
# container is created with auto-remove, so the engine then removes it)
#   - with EXIT_RELEASED at once on a line `bye` (the owner is done with it),
#   - with EXIT_ORPHANED $1 seconds (the grace period) after end-of-file (the owner is gone),
#   - with EXIT_EXPIRED once $2 seconds (the maximum lifetime) have passed since it started,
# whatever happens. The time is bash's own clock ($SECONDS), not read's status, so no signal
# or interrupted read can make it exit early. Else only SIGKILL from outside (the engine,
# `docker kill`) or the OOM killer ends it; `DockerSandbox.diagnose` tells those apart.
EXIT_RELEASED, EXIT_ORPHANED, EXIT_EXPIRED = 0, 3, 4
PID1_SCRIPT = (
    "trap '' HUP INT QUIT ILL TRAP ABRT BUS FPE USR1 SEGV USR2 PIPE ALRM TERM STKFLT TSTP TTIN TTOU URG "
    "XCPU XFSZ VTALRM PROF WINCH IO PWR SYS; exec 3<>/dev/ptmx 2>/dev/null; "
    "while :; do r=$(($2 - SECONDS)); ((r > 0)) || exit 4; read -r -t $((r < 10 ? r : 10)) -u 0 l; s=$?; wait; "
    "if ((s == 0)); then [[ $l == bye ]] && exit 0; elif ((s <= 128)); then break; fi; done; "
    "end=$((SECONDS + $1)); while ((SECONDS < end && SECONDS < $2)); do "
    "read -r -t $((end - SECONDS)) -u 3 _ || :; done; ((SECONDS < $2)) && exit 3; exit 4"
)


def pid1_command(spec: SandboxSpec) -> list[str]:
    """PID 1's argv: the script, its grace period and maximum lifetime in whole seconds."""
    grace = max(1, round(owner_lease.grace_s(spec.orphan_grace_s)))
    life = max(1, round(owner_lease.max_lifetime_s(spec.max_lifetime_s)))
    return ["bash", "-c", PID1_SCRIPT, "envfarm-init", str(grace), str(life)]


# uid/gid of PID 1: nobody's, no user a sandbox's commands run as (the agent, or root where the
# tests of a public image run as root): without capabilities none of them may signal it, ptrace
# it or open its stdin (/proc/1/fd/0) to end the sandbox as if its owner had released it.
PID1_USER = "65534:65534"

# Blocking Docker SDK calls run here, not in asyncio's small default pool, so that thousands of
# sandboxes on one event loop do not queue behind six threads.
_EXECUTOR = ThreadPoolExecutor(max_workers=int(os.environ.get("ENVFARM_DOCKER_THREADS", "64")),
                               thread_name_prefix="envfarm-docker")


@lru_cache(maxsize=1)
def docker_client() -> docker.DockerClient:
    """One shared client with a connection pool sized for many concurrent sandboxes."""
    try:
        client = docker.from_env(max_pool_size=128, timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        raise SandboxError(
            f"cannot reach a Docker engine ({exc}); start one with `bash scripts/docker-up.sh`"
        ) from exc
    return client


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def hijacked_stream(sock: Any) -> tuple[socket.socket, bytes, Any]:
    """The raw socket of a hijacked `exec_start(socket=True)`, non-blocking; the bytes the HTTP
    client had already read past the response's headers; and the SDK's socket object, which the
    caller must keep referenced for as long as it uses the raw socket.

    Early bytes: the engine may send the command's first frames in the same read as the headers
    (a loaded machine, a command that prints at once); the SDK's socket object skips its
    reader's buffer, so without these bytes the stream starts mid-way. The SDK's object: it
    holds the HTTP response, and a response the garbage collector takes closes the connection's
    file descriptor under whoever still uses the raw socket (seen as EBADF on a session's write)."""
    raw = getattr(sock, "_sock", sock)
    raw.setblocking(False)
    response = getattr(sock, "_response", None)
    reader = getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None)
    early = reader.read1(1 << 20) if reader is not None else b""
    return raw, early or b"", sock


async def _in_thread(fn, *args, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, partial(fn, *args, **kwargs))


class DockerSandbox:
    """A sandbox backed by one container. Create with `await DockerSandbox.create(spec)`."""

    simulated = False  # a real repository: set-up checks it (see Sandbox)

    def __init__(self, container: Any, spec: SandboxSpec) -> None:
        self.container = container
        self.spec = spec
        self.id: str = container.id[:12]
        self.created_at = time.time()  # a moment after the engine created it
        # time.monotonic() past which PID 1 removes the sandbox whatever happens (see PID1_SCRIPT)
        self.expires_at = time.monotonic() + owner_lease.max_lifetime_s(spec.max_lifetime_s) - 1.0
        self._api = docker_client().api
        self.requested_spec = spec  # the spec as the caller gave it (before adapting): a fork's children's
        self._shell_stream: Any = None  # the SDK's object of the session's exec (see hijacked_stream)
        self._session = ShellSession(self._open_shell, self._run_detached, self._exec_exit_code)
        self._closed = False
        self._counters = {"oom_kill": 0, "max": 0}
        self._disk_limit = parse_size(spec.disk) if spec.disk else None
        self._disk_checked = 0.0
        self.disk_used = 0  # bytes in the writable layer at the last check
        self.inodes_used = 0  # files, folders and links in the writable layer at the last check
        self._inodes_before: int | None = None  # the count at the last check of the running command
        self._disk_tripped = False  # the watchdog killed the running command
        self.uses = 0  # episodes (or gradings) it served before this one: > 0 once recycled
        self._pristine: Any = None  # its first state outside the image (docker_recycle.PlacesState)

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    async def create(cls, spec: SandboxSpec, *, owner: str | None = None, run: str = "adhoc",
                     task: str = "") -> DockerSandbox:
        labels = {LABEL: "1", LABEL_OWNER: owner or default_owner(), LABEL_RUN: run,
                  LABEL_TASK: task, LABEL_CREATED: f"{time.time():.0f}", **spec.labels}
        requested = spec
        spec, container = await _in_thread(_resolve_and_start, spec, labels)
        sandbox = cls(container, spec)
        sandbox.requested_spec = requested
        try:
            await sandbox._session.start(spec.workdir)
        except BaseException:
            await sandbox.close()
            raise
        return sandbox

    async def close(self) -> None:
        """Remove the container; safe to call twice and after any error."""
        if self._closed:
            return
        self._closed = True
        await self._session.close()
        removed = False
        try:
            await _in_thread(remove_container, self.container.id)
            removed = True
        finally:  # not removed (the engine is lost): PID 1 is told to exit over its lease
            owner_lease.drop(self.container.id, release=not removed)
            no_network.remove_hosts_file(self.container.name)

    async def fork(self, n: int, factory: SandboxFactory | None = None) -> list[Sandbox]:
        """n independent sandboxes holding this one's files and shell state now (see
        envfarm.sandbox.docker_fork); call it between commands. Each child is made by `factory`
        (as any sandbox: a warm pool's serves) or the backend's create, and is closed like any."""
        if self._closed:
            raise SandboxError(f"sandbox {self.id} is closed: it cannot be forked")
        from envfarm.sandbox.docker_fork import fork

        return await fork(self, n, factory)

    # -- reuse (see envfarm.sandbox.docker_recycle) ---------------------------------------
    @property
    def recyclable(self) -> bool:
        """Whether `recycle` may be tried: open, and its first state recorded (`mark_pristine`)."""
        return not self._closed and self._pristine is not None

    async def mark_pristine(self) -> bool:
        """Record, before anyone used it, what a reset must give back besides the image (its
        /dev tree, the engine's bound files); False where this process cannot verify a reset."""
        from envfarm.sandbox import docker_recycle

        if not docker_recycle.supported() or (self.spec.user or "root").split(":")[0] in ("root", "0"):
            return False  # a root user (without capabilities) still writes what no reset verifies
        try:
            info = await _in_thread(self._api.inspect_container, self.container.id)
            _, _, pid, files = docker_recycle.container_facts(info)

            def first_state() -> docker_recycle.PlacesState:
                root = docker_recycle.container_root(pid, self.container.id)
                try:
                    state = docker_recycle.places_state(root, files, pid)
                    docker_recycle.put_back_times(root, state)  # as before this look at them
                    return state
                finally:
                    os.close(root)

            self._pristine = await _in_thread(first_state)
        except (OSError, SandboxError, docker.errors.APIError) as exc:
            log.debug("sandbox %s cannot be recycled: %s", self.id, exc)
            return False
        return True

    async def recycle(self) -> None:
        """Kill every process, give the writable layer back the image's content, verify it from
        this machine and start a fresh shell session: the sandbox is then as first handed out.
        NotRecyclable (a SandboxError) when any step fails: the caller closes it."""
        from envfarm.sandbox import docker_recycle

        if not self.recyclable:
            raise docker_recycle.NotRecyclable(f"sandbox {self.id} is closed or was not marked pristine")
        try:
            async with asyncio.timeout(docker_recycle.RESET_TIMEOUT_S):
                await docker_recycle.reset(self, self._pristine)
            self._session = ShellSession(self._open_shell, self._run_detached, self._exec_exit_code)
            await self._session.start(self.spec.workdir)
            left = await self._session.exec(docker_recycle.IPC_CHECK, 10, 4096)
        except docker_recycle.NotRecyclable:
            raise
        except TimeoutError as exc:
            raise docker_recycle.NotRecyclable(f"sandbox {self.id}: the reset took longer than "
                                               f"{docker_recycle.RESET_TIMEOUT_S:.0f} s") from exc
        except (OSError, SandboxError, docker.errors.APIError, requests.exceptions.RequestException) as exc:
            raise docker_recycle.NotRecyclable(f"sandbox {self.id}: the reset failed: {exc}") from exc
        if left.exit_code != 0 or left.output.strip() != "0":
            raise docker_recycle.NotRecyclable(f"sandbox {self.id}: System V IPC objects were left")
        self._counters = {"oom_kill": 0, "max": 0}
        await self._cgroup_limit_hit()  # the kernel's counters now: a limit hit before is not the next user's
        self.uses += 1
        self.disk_used = self.inodes_used = 0
        self._inodes_before, self._disk_tripped = None, False

    async def __aenter__(self) -> DockerSandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def is_alive(self) -> bool:
        """Cheap liveness: not closed and the shell's stream still open (no round trip)."""
        return not self._closed and self._session.is_open()

    @property
    def last_ok(self) -> float:
        """time.monotonic() of the last command that came back."""
        return self._session.last_ok

    # -- commands and files ----------------------------------------------------------------
    async def exec(self, cmd: str, timeout: float = 60.0,
                   output_limit: int = DEFAULT_OUTPUT_LIMIT) -> ExecResult:
        if self._closed:
            raise SandboxError(f"sandbox {self.id} is closed")
        watching = self._disk_limit is not None or self.spec.inodes is not None
        self._inodes_before = None
        self._disk_tripped = False  # a verdict on the previous command is not one on this
        # The watchdog's task starts only once a command has run for disk_check_s: most commands
        # end well before, and a task started and cancelled per command costs a third of a round trip.
        watchdog: list[asyncio.Task] = []
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.spec.disk_check_s, lambda: watchdog.append(
            loop.create_task(self._watch_disk(first_wait=0.0)))) if watching else None
        try:
            result = await self._session.exec(cmd, timeout, output_limit)
            if timer is not None:
                timer.cancel()
                for task in watchdog:
                    task.cancel()
                over = await asyncio.gather(*watchdog, return_exceptions=True)
                if True in over or await self._disk_over(force=False):
                    result.limit = "disk"
                    result.note = _join(result.note, self._disk_note())
            if result.limit is None and (result.timed_out or result.exit_code is None or result.exit_code > 125):
                result.limit = await self._cgroup_limit_hit()
            if result.limit == "memory":
                result.note = _join(result.note, f"a process was killed: out of memory (limit {self.spec.memory})")
            elif result.limit == "pids":
                result.note = _join(result.note, f"the sandbox ran out of processes (limit {self.spec.pids})")
            elif result.limit is None and result.timed_out:
                result.limit = "timeout"
            elif result.limit is None and result.truncated:
                result.limit = "output"
            return result
        except (OSError, docker.errors.APIError, SandboxError) as exc:
            raise await self.diagnose(exc) from exc
        finally:
            if timer is not None:
                timer.cancel()
            for task in watchdog:
                if not task.done():
                    task.cancel()

    async def host_exec(self, argv: list[str], timeout: float = 60.0, output_limit: int = DEFAULT_OUTPUT_LIMIT,
                        env: dict[str, str] | None = None, stdin: bytes | None = None) -> HostResult:
        """A fresh `docker exec` of `argv` (no shell string, never the agent's session) as the
        sandbox's user, under `env -i` with PATH=HOST_PATH, HOME=/ and `env`, killed after
        `timeout`. stdout beyond `output_limit` is not read (the host's memory is shared by every
        sandbox on the node): `truncated` says so. After `timeout` the host stops waiting
        (`timed_out`); bounding the command's own time in the container is the caller's business
        (`timeout` there is a process the command's own `kill` could end). About 50-75 ms: the
        engine starts a process. `stdin`: bytes fed to the command, then end-of-file (a fork's
        archive, see envfarm.sandbox.docker_fork)."""
        if self._closed:
            raise SandboxError(f"sandbox {self.id} is closed")
        clean = {"PATH": HOST_PATH, "HOME": "/", "LC_ALL": "C", **(env or {})}
        full = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in clean.items()), *argv]
        started = time.perf_counter()

        def start() -> tuple[str, socket.socket, bytes, Any]:
            exec_id = self._api.exec_create(self.container.id, full, stdin=stdin is not None, stdout=True,
                                            stderr=True, user=self.spec.user, workdir="/")["Id"]
            return exec_id, *hijacked_stream(self._api.exec_start(exec_id, socket=True))

        out, err = bytearray(), bytearray()
        truncated = timed_out = False
        try:
            exec_id, raw, early, _keep = await _in_thread(start)  # _keep: see hijacked_stream
            reader, writer = await asyncio.open_unix_connection(sock=raw, limit=1 << 20) \
                if raw.family == socket.AF_UNIX else await asyncio.open_connection(sock=raw, limit=1 << 20)

            async def pump() -> bool:
                buf = bytearray(early)
                while True:
                    while len(buf) >= 8:
                        kind, size = STREAM_HEADER.unpack_from(buf)
                        if len(buf) < 8 + size:
                            break
                        target, cap = (out, output_limit) if kind == 1 else (err, 65536)
                        room = max(cap - len(target), 0)
                        target += buf[8:8 + min(size, room)]
                        del buf[:8 + size]
                        if kind == 1 and size > room:
                            return True
                    data = await reader.read(1 << 16)
                    if not data:
                        return False
                    buf += data

            async def feed() -> None:
                view = memoryview(stdin or b"")
                for at in range(0, len(view), 1 << 20):
                    writer.write(view[at:at + (1 << 20)])
                    await writer.drain()
                writer.write_eof()

            feeding = asyncio.ensure_future(feed()) if stdin is not None else None
            try:  # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancel that lands as it ends
                async with asyncio.timeout(timeout):
                    truncated = await pump()
                    if feeding is not None and not truncated:
                        await feeding
            except TimeoutError:
                timed_out = True
            finally:
                if feeding is not None and not feeding.done():
                    feeding.cancel()
                writer.close()
            code = None
            if not truncated and not timed_out:
                for _ in range(50):  # the stream closes a moment before the engine records the exit
                    code = (await _in_thread(self._api.exec_inspect, exec_id)).get("ExitCode")
                    if code is not None:
                        break
                    await asyncio.sleep(0.01)
        except (OSError, docker.errors.APIError, SandboxError) as exc:
            raise await self.diagnose(exc) from exc
        return HostResult(exit_code=code, stdout=bytes(out), stderr=bytes(err), timed_out=timed_out,
                          truncated=truncated, seconds=time.perf_counter() - started)

    async def diagnose(self, exc: BaseException) -> SandboxError:
        """Whose failure `exc` was, from the engine's health and the container's state.

        SandboxError (infrastructure): the engine does not answer, the container is gone (removed
        by someone else) or was stopped from outside (`docker kill`, an engine restart: PID 1
        ignores every signal from inside, see PID1_SCRIPT). SandboxBrokenError (the sandbox's own state):
        the container was killed for memory, or it runs but cannot run our command (processes or
        memory exhausted, its shell or working directory broken). Whether the agent did it is
        the env's call: it knows when the agent first acted (`SandboxBrokenError.exited_at`).
        """
        if isinstance(exc, SandboxBrokenError):
            return exc
        try:
            info = await _in_thread(self._api.inspect_container, self.container.id)
        except docker.errors.NotFound:
            return await self._diagnose_removed(exc)
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as engine:
            return SandboxError(f"sandbox {self.id}: the Docker engine does not answer ({engine}) after: {exc}")
        state = info.get("State") or {}
        if state.get("Running") and not state.get("Restarting"):
            return SandboxBrokenError(f"sandbox {self.id}: its container runs but cannot run commands any more "
                                      f"(processes or memory exhausted, or its shell broken?): {exc}")
        if state.get("OOMKilled"):
            return SandboxBrokenError(f"sandbox {self.id}: its container was killed for memory "
                                      f"(limit {self.spec.memory}): {exc}", exited_at=_unix(state.get("FinishedAt")))
        if state.get("ExitCode") in (EXIT_ORPHANED, EXIT_EXPIRED):
            return SandboxError(f"sandbox {self.id}: {_self_exit(state['ExitCode'], self.spec)}: {exc}")
        return SandboxError(f"sandbox {self.id}: its container stopped from outside (status {state.get('Status')}, "
                            f"exit code {state.get('ExitCode')}): {exc}")

    async def _diagnose_removed(self, exc: BaseException) -> SandboxError:
        """The container is gone. Sandboxes are auto-removed when PID 1 exits, so its state went
        with it: what happened is read from the engine's recent events of this container (an
        `oom` and no `kill` from outside before it died is the same evidence as State.OOMKilled).
        Without them (the engine's event buffer moved on), it was removed from outside."""
        try:
            fate = await _in_thread(container_fate, self.container.id, self.created_at)
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
            fate = {}
        code = fate.get("exit_code")
        if code in (EXIT_ORPHANED, EXIT_EXPIRED) and not fate.get("killed"):
            return SandboxError(f"sandbox {self.id}: {_self_exit(code, self.spec)}: {exc}")
        if fate.get("oom") and not fate.get("killed") and "exit_code" in fate:
            return SandboxBrokenError(f"sandbox {self.id}: its container was killed for memory "
                                      f"(limit {self.spec.memory}): {exc}", exited_at=fate.get("died_at"))
        if "exit_code" in fate:
            return SandboxError(f"sandbox {self.id}: its container was stopped from outside and removed "
                                f"(exit code {code}): {exc}")
        return SandboxError(f"sandbox {self.id}: its container was removed from outside ({exc})")

    async def _cgroup_limit_hit(self) -> str | None:
        """Which cgroup limit (memory, pids) fired since the last look, from the kernel's counters."""
        try:
            res = await self._session.exec(COUNTERS, 10, 4096)
        except (OSError, SandboxError, docker.errors.APIError):
            return None
        seen = dict(self._counters)
        for line in res.output.splitlines():
            key, _, value = line.partition(" ")
            if key in seen and value.strip().isdigit():
                seen[key] = int(value)
        hit = "memory" if seen["oom_kill"] > self._counters["oom_kill"] else \
            "pids" if seen["max"] > self._counters["max"] else None
        self._counters = seen
        return hit

    async def _disk_over(self, force: bool = True) -> bool:
        """Measure the writable layer (at most once per disk_check_s unless forced)."""
        if self._disk_tripped:  # the watchdog killed the command (and may have been cancelled since)
            self._disk_tripped = False
            return True
        now = time.monotonic()
        if not force and now - self._disk_checked < self.spec.disk_check_s:
            return False
        self._disk_checked = now
        try:
            info = await _in_thread(self._api._result, self._api._get(
                self._api._url("/containers/{0}/json", self.container.id), params={"size": 1}), True)
        except docker.errors.APIError:
            return False
        self.disk_used = int(info.get("SizeRw") or 0)
        if self._disk_limit is not None and self.disk_used > self._disk_limit:
            return True
        if self.spec.inodes is None:
            return False
        upper = (info.get("GraphDriver") or {}).get("Data", {}).get("UpperDir")
        before, self._inodes_before = self._inodes_before, None
        self.inodes_used = await _in_thread(count_inodes, upper) if upper else 0
        self._inodes_before = self.inodes_used
        # over the limit and still growing since the last look in this command: an `rm -rf` of
        # the excess (or a command that merely runs while it is there) is never killed
        return self.inodes_used > self.spec.inodes and before is not None and self.inodes_used > before

    def _disk_note(self) -> str:
        if self.spec.inodes is not None and self.inodes_used > self.spec.inodes:
            return (f"the sandbox holds more than {self.spec.inodes} new files and folders, over its limit: "
                    "the command was killed; delete files to go on")
        return (f"the sandbox's disk use reached {self.disk_used / 1e6:.0f} MB, over its {self.spec.disk} "
                "limit: the command was killed; delete files to go on")

    async def _watch_disk(self, first_wait: float | None = None) -> bool:
        """While a command runs: past the disk limit, kill every process but PID 1 and the shell."""
        wait = self.spec.disk_check_s if first_wait is None else first_wait
        while True:
            await asyncio.sleep(wait)
            wait = self.spec.disk_check_s
            if await self._disk_over():
                self._disk_tripped = True
                await self._run_detached(["sh", "-c", KILL_SCRIPT, "kill", str(self._session.shell_pid)])
                return True

    async def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Put a file into the container as the sandbox's user, never through argv.

        The bytes go base64-encoded through the shell session (7 ms for a patch), in chunks of
        SESSION_WRITE_MAX. Never through the archive API: the engine extracts archives as root,
        so a write there could land anywhere (/etc, site-packages); a path the sandbox's user may
        not write raises PermissionError.
        """
        payload = data.encode() if isinstance(data, str) else data
        parent, _, name = path.rstrip("/").rpartition("/")
        if not path.startswith("/"):
            parent, name = (self.spec.workdir + "/" + parent).rstrip("/"), name
        parent = parent or "/"
        target = f"{parent.rstrip('/')}/{name}"
        for at in range(0, max(len(payload), 1), SESSION_WRITE_MAX):
            encoded = base64.b64encode(payload[at:at + SESSION_WRITE_MAX]).decode()
            first, last = at == 0, at + SESSION_WRITE_MAX >= len(payload)
            # `command` and `>|`: the agent's own functions of these names and noclobber do not
            # get in the way (an agent set on breaking its own shell can still break its writes)
            write = f"command base64 -d {'>|' if first else '>>'} {_q(target)} <<'{WRITE_HEREDOC}'"
            mkdir = f"command mkdir -p {_q(parent)} && " if first else ""
            chmod = f" && command chmod {mode:o} {_q(target)}" if last else ""
            res = await self.exec(f"{mkdir}{write}{chmod}\n{encoded}\n{WRITE_HEREDOC}", timeout=30)
            if res.exit_code != 0:
                raise PermissionError(f"cannot write {target} as {self.spec.user} in sandbox {self.id}: "
                                      f"{res.output.strip()[-300:]}")

    async def read_file(self, path: str, max_bytes: int = READ_FILE_MAX) -> bytes:
        """One regular file's bytes through the archive API; past `max_bytes` it is refused from
        the archive's header (FileTooLargeError) before its content is transferred."""
        if not path.startswith("/"):
            path = f"{self.spec.workdir}/{path}"
        try:
            stream, stat = await _in_thread(self._api.get_archive, self.container.id, path)
        except docker.errors.NotFound as exc:
            raise FileNotFoundError(f"{path} does not exist in sandbox {self.id}") from exc
        try:
            size = int((stat or {}).get("size") or 0)
            if size > max_bytes:
                raise FileTooLargeError(f"{path} is {size} bytes, over the {max_bytes}-byte limit of a read "
                                        f"from sandbox {self.id}")
            data = await _in_thread(_read_capped, stream, max_bytes + (64 << 10), path)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                await _in_thread(close)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            if member is None or not member.isfile():
                raise IsADirectoryError(f"{path} is not a regular file in sandbox {self.id}")
            extracted = tar.extractfile(member)
            assert extracted is not None
            return extracted.read()

    async def docker_exec(self, cmd: str) -> ExecResult:
        """One plain `docker exec` per command: the slow path, kept for comparison."""
        started = time.perf_counter()
        res = await _in_thread(self.container.exec_run, ["bash", "-c", cmd],
                               user=self.spec.user, workdir=self.spec.workdir)
        return ExecResult(output=res.output.decode(errors="replace"), exit_code=res.exit_code,
                          seconds=time.perf_counter() - started)

    # -- plumbing for ShellSession ---------------------------------------------------------
    async def _open_shell(self) -> tuple[str, socket.socket]:
        def start() -> tuple[str, socket.socket]:
            exec_id = self._api.exec_create(
                self.container.id, ["bash", "--noprofile", "--norc"], stdin=True, stdout=True,
                stderr=True, user=self.spec.user, workdir=self.spec.workdir,
                environment=self.spec.env or None)["Id"]
            raw, _, self._shell_stream = hijacked_stream(self._api.exec_start(exec_id, socket=True))
            return exec_id, raw  # nothing comes before the driver's ready line: no early bytes to keep

        try:
            return await _in_thread(start)
        except docker.errors.APIError as exc:
            raise SandboxError(f"sandbox {self.id}: cannot start a shell: {exc}") from exc

    async def _run_detached(self, argv: list[str]) -> None:
        await _in_thread(self.container.exec_run, argv, user=self.spec.user)

    async def _exec_exit_code(self, exec_id: str) -> int | None:
        info = await _in_thread(self._api.exec_inspect, exec_id)
        return info.get("ExitCode")


def _resolve_and_start(spec: SandboxSpec, labels: dict[str, str]) -> tuple[SandboxSpec, Any]:
    """The spec made concrete (an image envfarm did not build adapted, `user=None` as the image's
    own user) and its container started: one trip to a worker thread per create."""
    from envfarm.sandbox.foreign_images import adapt_image

    image = adapt_image(spec.image, spec.base_commit, spec.activation)
    if image != spec.image:
        spec = dataclasses.replace(spec, image=image)
    if spec.user is None:  # the image's own user (PID 1 runs as nobody whatever the image says)
        spec = dataclasses.replace(spec, user=image_user(spec.image))
    return spec, _start_container(spec, labels)


# A container is created, then attached to (its lease), then started: an owner that dies
# between the create and the start leaves a container that never runs, so no lease can end it.
# Every process that creates sandboxes removes such stillborn containers of any owner on its
# engine, once per STILLBORN_SWEEP_S at most; no live owner keeps a container unstarted this long.
STILLBORN_AGE_S = 300.0
STILLBORN_SWEEP_S = 60.0
_last_sweep = 0.0


def sweep_stillborn(age_s: float = STILLBORN_AGE_S) -> int:
    """Remove envfarm containers created over `age_s` seconds ago and never started; how many."""
    now = time.time()
    removed = 0
    for container in docker_client().containers.list(
            all=True, filters={"label": LABEL, "status": "created"}, ignore_removed=True):
        created = float(container.labels.get(LABEL_CREATED) or now)
        if now - created >= age_s:
            remove_container(container.id)
            removed += 1
    if removed:
        log.info("removed %d envfarm container(s) whose owner died before starting them", removed)
    return removed


def _maybe_sweep_stillborn() -> None:
    global _last_sweep
    now = time.monotonic()
    if now - _last_sweep < STILLBORN_SWEEP_S:
        return
    _last_sweep = now
    try:
        sweep_stillborn()
        no_network.sweep_stale(_container_names)
    except (SandboxError, docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        log.debug("stillborn sweep failed: %s", exc)


def _container_names() -> set[str]:
    """The names of every envfarm container on the engine, any state."""
    listed = docker_client().api.containers(all=True, filters={"label": LABEL})
    return {name.lstrip("/") for c in listed for name in c.get("Names") or []}


def _create_container(client: docker.DockerClient, spec: SandboxSpec, labels: dict[str, str]) -> Any:
    name = f"envfarm-{uuid.uuid4().hex[:12]}"

    def create(network: dict[str, Any]) -> Any:
        # stdin open and closed when its first attached client goes (detach=False with
        # stdin_open sets StdinOnce): the owner's lease, see envfarm.sandbox.owner_lease
        return client.containers.create(
            spec.image, entrypoint=pid1_command(spec), detach=False, stdin_open=True, auto_remove=True,
            labels=labels, user=PID1_USER, working_dir=spec.workdir, environment=spec.env or None,
            cap_drop=["ALL"], security_opt=["no-new-privileges"],
            nano_cpus=int(spec.cpus * 1e9), mem_limit=spec.memory, memswap_limit=spec.memory,
            pids_limit=spec.pids, name=name, **({"runtime": spec.runtime} if spec.runtime else {}), **network,
        )

    if spec.network:
        return create({"network_mode": "bridge"})
    options = no_network.create_options(name)
    try:
        return create(options)
    except docker.errors.APIError as exc:
        no_network.remove_hosts_file(name)
        if "mounts" not in options or not no_network.is_refused_bind(exc, options["mounts"][0]["Source"]):
            raise
        no_network.fallback(exc)
        return create(no_network.create_options(name))
    except BaseException:
        no_network.remove_hosts_file(name)
        raise


@lru_cache(maxsize=8)
def check_runtime(name: str) -> None:
    """Raise SandboxError naming what to do where the engine has no OCI runtime `name` (checked once)."""
    have = sorted((docker_client().info().get("Runtimes") or {}).keys())
    if name not in have:
        raise SandboxError(f"the Docker engine has no OCI runtime {name!r} (it has: {', '.join(have) or 'none'}): "
                           "install it and name it under `runtimes` in the engine's daemon.json, or leave out "
                           "--oci-runtime for the engine's default")


def _start_container(spec: SandboxSpec, labels: dict[str, str]) -> Any:
    """Create (never pull: registries are the farm's business) and start one container."""
    client = docker_client()
    _maybe_sweep_stillborn()
    try:
        container = _create_container(client, spec, labels)
    except docker.errors.ImageNotFound as exc:
        raise ImageMissingError(
            f"image {spec.image!r} is not on this machine: build it with "
            "`python -m envfarm.sandbox.images build`, or load an exported copy with "
            f"`docker load -i <file>.tar` ({exc.explanation})"
        ) from exc
    except docker.errors.APIError as exc:
        raise SandboxError(f"cannot create a container from {spec.image!r}: {exc}") from exc
    try:  # the lease before the start: a started container always has its owner attached
        lease = client.api.attach_socket(container.id, params={"stdin": 1, "stream": 1})
        owner_lease.hold(container.id, lease, remove_container)
        container.start()
    except (docker.errors.APIError, requests.exceptions.RequestException, OSError) as exc:
        remove_container(container.id)
        owner_lease.drop(container.id)
        no_network.remove_hosts_file(container.name)
        raise SandboxError(f"cannot start a container from {spec.image!r}: {exc}") from exc
    return container


def container_fate(container_id: str, since: float, wait_s: float = 2.0) -> dict[str, Any]:
    """How a container ended, from the engine's recent events: `exit_code` and `died_at` (its
    `die` event), `oom` (an `oom` event), `killed` (a `kill` through the API: from outside).
    Empty when the engine no longer has its events. Waits up to `wait_s` for the `die` event,
    which can come a moment after the container's streams closed."""
    api = docker_client().api
    deadline = time.monotonic() + wait_s
    while True:
        fate: dict[str, Any] = {}
        seen = False
        for event in api.events(since=max(0.0, since - 5), until=time.time() + 0.01,
                                filters={"container": container_id}, decode=True):
            seen = True
            status = event.get("status") or event.get("Action")
            if status == "oom":
                fate["oom"] = True
            elif status == "kill":
                fate["killed"] = True
            elif status == "die":
                code = (event.get("Actor") or {}).get("Attributes", {}).get("exitCode")
                fate["exit_code"] = int(code) if code is not None and code.lstrip("-").isdigit() else None
                fate["died_at"] = event.get("timeNano", 0) / 1e9 or None
            elif status == "destroy":
                fate["destroyed"] = True
        if "exit_code" in fate or fate.get("destroyed") or not seen or time.monotonic() > deadline:
            return fate
        time.sleep(0.1)


def _self_exit(code: int, spec: SandboxSpec) -> str:
    if code == EXIT_EXPIRED:
        return (f"its container removed itself: it reached its maximum lifetime of "
                f"{owner_lease.max_lifetime_s(spec.max_lifetime_s):.0f} s (SandboxSpec.max_lifetime_s)")
    return "its container removed itself: its owner's lease on it was lost (see envfarm.sandbox.owner_lease)"


def remove_container(container_id: str, patience_s: float = 30.0) -> None:
    """Force-remove one container; a missing container is fine.

    Engine hiccups are retried with backoff for up to `patience_s`, so a container whose engine is
    restarting is still removed once it is back instead of being left behind.
    """
    api = docker_client().api
    deadline = time.monotonic() + patience_s
    delay = 0.2
    while True:
        try:
            api.remove_container(container_id, force=True, v=True)
            return
        except docker.errors.NotFound:
            return
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
            if "already in progress" in str(exc):  # the engine's auto-remove: gone a moment later
                _await_gone(api, container_id, deadline)
                return
            if time.monotonic() + delay > deadline:
                raise SandboxError(f"could not remove container {container_id[:12]}: {exc}") from exc
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _await_gone(api: Any, container_id: str, deadline: float) -> None:
    """Wait until the engine no longer lists a container another removal is taking away (until
    `deadline`): whoever closes a sandbox may count on its container being gone."""
    while time.monotonic() < deadline:
        try:
            api.inspect_container(container_id)
        except docker.errors.NotFound:
            return
        except (docker.errors.APIError, requests.exceptions.ConnectionError):
            pass
        time.sleep(0.05)


class DockerBackend(SandboxBackend):
    """Docker sandboxes on this node's engine; the engine's labels are the registry for reaping.

    Admission defaults protect the engine: a burst of creates past about eight at once only
    queues inside dockerd and stretches every start.
    """

    name = "docker"
    simulated = False
    leaves_orphans = True
    max_starting = 8
    create_rate = 20.0

    def __init__(self, config: DockerBackendConfig | None = None) -> None:
        from envfarm.sandbox.backends import DockerBackendConfig

        self.config = config or DockerBackendConfig()

    async def create(self, spec: SandboxSpec, task_id: str = "", *, owner: str | None = None,
                     run: str = "adhoc") -> Sandbox:
        if self.config.runtime and spec.runtime is None:
            spec = dataclasses.replace(spec, runtime=self.config.runtime)
        if spec.runtime:
            await _in_thread(check_runtime, spec.runtime)
        return await DockerSandbox.create(spec, owner=owner, run=run, task=task_id)

    def reap(self, *, owner: str | None = None, run: str | None = None,
             older_than_s: float | None = None) -> int:
        filters = {}
        if owner:
            filters[LABEL_OWNER] = owner
        if run:
            filters[LABEL_RUN] = run
        removed = 0
        now = time.time()
        for container in list_containers(**filters):
            if older_than_s is not None:
                created = float(container.labels.get(LABEL_CREATED, now))
                if now - created < older_than_s:
                    continue
            remove_container(container.id)
            removed += 1
        no_network.sweep_stale(_container_names)  # hosts files of sandboxes that ended without a close
        return removed

    def ensure_image(self, image: str, registry: str | None = None, tarball: bytes | None = None,
                     peers: Sequence[Callable[[str], Iterable[bytes]]] = ()) -> str:
        from envfarm.sandbox.image_supply import ensure_image

        return ensure_image(image, registry, tarball, peers)

    def held_images(self, images: Iterable[str]) -> set[str]:
        from envfarm.sandbox.image_supply import held_images

        return held_images(images)

    def export_image(self, image: str) -> Iterator[bytes]:
        from envfarm.sandbox.image_supply import export_image_chunks

        return export_image_chunks(image)

    def adapt_image(self, image: str, base_commit: str = "", activation: str = "") -> str:
        from envfarm.sandbox.foreign_images import adapt_image

        return adapt_image(image, base_commit, activation)

    def needs_adapting(self, image: str) -> bool:
        from envfarm.sandbox.foreign_images import is_native

        try:
            return not is_native(docker_client().images.get(image).labels)
        except docker.errors.DockerException:
            return False  # absent or no engine: ensure_image says so, not this

    def image_user(self, image: str) -> str:
        return image_user(image)


@lru_cache(maxsize=4096)
def image_user(image: str) -> str:
    """The user an image's processes run as (its USER; root where it sets none)."""
    try:
        config = docker_client().images.get(image).attrs.get("Config") or {}
    except docker.errors.ImageNotFound as exc:
        raise ImageMissingError(f"image {image!r} is not on this machine") from exc
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        raise SandboxError(f"cannot look up image {image!r}: {exc}") from exc
    return (config.get("User") or "root").split(":")[0]


def list_containers(**label_filters: str) -> list[Any]:
    """Containers that carry the envfarm label (and the given label values), stopped included
    (those that remove themselves while being listed are left out)."""
    labels = [LABEL] + [f"{k}={v}" for k, v in label_filters.items()]
    return docker_client().containers.list(all=True, filters={"label": labels}, ignore_removed=True)


def _unix(stamp: str | None) -> float | None:
    """Docker's RFC 3339 time stamp ('2026-11-29T08:00:00.123456789Z') as unix time; None if unset."""
    if not stamp or stamp.startswith("0001-"):
        return None
    head, _, frac = stamp.rstrip("Z").partition(".")
    try:
        return datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp() + float(f"0.{frac or 0}")
    except ValueError:
        return None



def _read_capped(stream: Any, cap: int, path: str) -> bytes:
    out = bytearray()
    for chunk in stream:
        out += chunk
        if len(out) > cap:
            raise FileTooLargeError(f"{path} grew past {cap} bytes while it was read")
    return bytes(out)


def count_inodes(top: str, stop: int | None = None) -> int:
    """Entries (files, folders, links, whiteouts) under `top`, counting no further than `stop`.

    The writable layer's upper directory on this machine; when this process may not read it
    (not root, another engine's data root) the count is 0: the byte limit still applies.
    """
    count, pending = 0, [top]
    while pending and (stop is None or count < stop):
        try:
            with os.scandir(pending.pop()) as it:
                for entry in it:
                    count += 1
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
        except OSError:
            continue
    return count


def _join(note: str, more: str) -> str:
    return f"{note}; {more}" if note else more


def _q(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"
