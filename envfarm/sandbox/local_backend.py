"""Local sandboxes: a private working copy of the repository per sandbox, on a machine with no Docker.

Why: many GPU nodes cannot run a Docker engine and cannot download anything, yet trusted
policies and checks (a scripted policy, a gold-patch check, evaluation of a trusted model) still
need the same tools and grading. A LocalSandbox is a folder holding a copy of the project's tree
at the image's base commit (`envfarm.sandbox.local_trees`), driven by the same persistent shell
(`ShellSession`, over a socketpair to a local bash), host commands and grading as a DockerSandbox.

NOT ISOLATED. There is no container, no cgroup limit (cpus, memory, pids, disk are not enforced)
and no network cut. When envfarm runs as root, each sandbox runs as its own unprivileged uid
(from a range no account and no process uses), so its processes cannot touch the farm's or
another sandbox's, and `kill -9 -1` (extract_patch's stop of the agent) ends that sandbox alone.
Anything readable by every user (envfarm's task files, gold patches included) is readable in
the sandbox: never use this backend for RL on untrusted policies. Hence it is refused unless
asked for twice: `--backend local` (or LocalBackendConfig) AND an acknowledgement
(`allow_unisolated=True` or ENVFARM_ALLOW_UNISOLATED=1).

Paths: tasks, tools and grading name /testbed and /tmp. A private mount namespace could put the
copy there, but needs CAP_SYS_ADMIN (or unprivileged user namespaces), which GPU containers
usually lack; so commands, host argv and file paths are translated instead: /testbed (the
spec's workdir), /tmp and /opt/envfarm become the sandbox's own folders, and output is
translated back. One code path works on every machine, and concurrent sandboxes never share a
/tmp file (graders write fixed names there).

Not as root: every process runs as envfarm's own user. The sandbox's processes carry
ENVFARM_SANDBOX=<id> in their environment, and the bash `kill` of its shells and host commands
(BASH_ENV) turns a target of -1, 0 or a process group into "this sandbox's processes", so
extract_patch's `kill -9 -1` stops only them. A program that calls kill(2) itself (/bin/kill
-9 -1) is not caught: run as root wherever the policy is not fully trusted.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envfarm.sandbox import local_trees
from envfarm.sandbox.base import (
    DEFAULT_OUTPUT_LIMIT,
    HOST_PATH,
    ExecResult,
    FileTooLargeError,
    ForkUnsupportedError,
    HostResult,
    Sandbox,
    SandboxBackend,
    SandboxError,
    SandboxFactory,
    SandboxSpec,
)
from envfarm.sandbox.shell_session import ShellSession

if TYPE_CHECKING:
    from envfarm.sandbox.backends import LocalBackendConfig

ALLOW_ENV = "ENVFARM_ALLOW_UNISOLATED"
MARK_ENV = "ENVFARM_SANDBOX"
READ_FILE_MAX = 32 << 20
RESTARTED = "the shell exited; a new shell session was started (exported variables and shell functions were reset)"
_ids = itertools.count()


class UnisolatedBackendRefused(RuntimeError):
    """The local backend was asked for without the acknowledgement that it isolates nothing."""


def refusal_reason(config: LocalBackendConfig) -> str | None:
    """Why the local backend may not be made from `config` here, or None."""
    if config.allow_unisolated or os.environ.get(ALLOW_ENV) == "1":
        return None
    return ("the local backend runs every sandbox as a plain process on this machine, with no container, "
            "no resource limits and no network cut, and envfarm's task files (gold patches included) are "
            "readable there: it is for trusted policies and checks only, never for RL on untrusted policies. "
            f"Acknowledge it with {ALLOW_ENV}=1 (or --allow-unisolated / LocalBackendConfig(allow_unisolated=True))")


# Sourced by every bash of a non-root sandbox (BASH_ENV): `kill` of -1, 0 or a process group ends
# this sandbox's processes (those whose environment carries its mark) instead of every process of
# the user. `kill -l`, jobs and plain pids are left to the builtin.
KILL_GUARD = r"""__ef_kill_sandbox() {
  local d p _
  for _ in 1 2 3; do for d in /proc/[0-9]*; do p=${d#/proc/}
    { [ "$p" = "$$" ] || [ "$p" = "$BASHPID" ]; } && continue
    grep -qzx "ENVFARM_SANDBOX=${ENVFARM_SANDBOX:-?}" "$d/environ" 2>/dev/null && builtin kill "$@" "$p" 2>/dev/null
  done; done; return 0
}
kill() {
  local a sig=() t=() mass=
  case ${1-} in
    -l|-L) builtin kill "$@"; return;;
    -s|-n) sig=("$1" "${2-}"); shift 2;;
    --) ;;
    -*) sig=("$1"); shift;;
  esac
  [ "${1-}" = -- ] && shift
  for a in "$@"; do case $a in -*|0) mass=1;; *) t+=("$a");; esac; done
  [ -z "$mass" ] || __ef_kill_sandbox ${sig[@]+"${sig[@]}"}
  [ ${#t[@]} -eq 0 ] || builtin kill ${sig[@]+"${sig[@]}"} "${t[@]}"
}
"""


class LocalSandbox:
    """One working copy with a persistent shell; `await LocalSandbox.create(...)` through LocalBackend."""

    simulated = False

    def __init__(self, spec: SandboxSpec, root: Path, uid: int | None, lock_fds: list[int], python_env: Path,
                 sandbox_id: str) -> None:
        self.spec = spec
        self.root = root  # the sandbox's folder: testbed/ (spec.workdir), tmp/, home/, opt/envfarm/
        self.uid = uid  # None: envfarm's own user (not root)
        self.id = sandbox_id
        self.created_at = time.time()
        self._lock_fds = lock_fds  # the sandbox's own lock and its uid's: held while it lives
        self._closed = False
        self._procs: dict[str, subprocess.Popen] = {}
        maps = {spec.workdir.rstrip("/") or "/testbed": root / "testbed", "/tmp": root / "tmp",
                "/opt/envfarm": root / "opt" / "envfarm"}
        self._maps = sorted(((k, str(v)) for k, v in maps.items()), key=lambda kv: -len(kv[0]))
        self._to_host_re = re.compile(r"(?<![\w.~/-])(" + "|".join(re.escape(k) for k, _ in self._maps)
                                      + r")(?![\w.~-])")
        self.workdir = str(root / "testbed")
        guard = root / "kill_guard.sh"
        self._env = {
            "PATH": f"{python_env}/bin:{HOST_PATH}", "HOME": str(root / "home"), "TMPDIR": str(root / "tmp"),
            "USER": "agent", "LOGNAME": "agent", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "GIT_CONFIG_NOSYSTEM": "1", "VIRTUAL_ENV": str(python_env),
            MARK_ENV: self.id, **({} if uid is not None else {"BASH_ENV": str(guard)}),
            **{k: self.to_host(v) for k, v in spec.env.items()},
        }
        self._session = ShellSession(self._open_shell, self._run_detached, self._exec_exit_code, framed=False)

    # -- paths -----------------------------------------------------------------------------
    def to_host(self, text: str) -> str:
        """Sandbox paths (/testbed, /tmp, /opt/envfarm) in `text` as this sandbox's own folders."""
        table = dict(self._maps)
        return self._to_host_re.sub(lambda m: table[m.group(1)], text)

    def to_sandbox(self, text: str) -> str:
        """The sandbox's own folders in `text` as the paths the agent and the tasks use."""
        for path, host in sorted(self._maps, key=lambda kv: -len(kv[1])):
            text = text.replace(host, path)
        return text

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    async def create(cls, spec: SandboxSpec, backend: LocalBackend, *, owner: str | None, run: str,
                     task: str) -> LocalSandbox:
        tree, env = await asyncio.to_thread(backend.prepare, spec.image)
        uid, uid_fd = await asyncio.to_thread(backend.allocate_uid)
        sandbox_id = f"local-{uuid.uuid4().hex[:12]}"
        root = backend.dir / "sandboxes" / sandbox_id
        try:
            lock_fd = await asyncio.to_thread(_make_root, root, tree, uid,
                                              {"id": sandbox_id, "owner": owner or default_owner(), "run": run,
                                               "task": task, "uid": uid, "created": time.time()})
        except BaseException:
            if uid_fd is not None:
                os.close(uid_fd)
            raise
        sandbox = cls(spec, root, uid, [lock_fd] + ([] if uid_fd is None else [uid_fd]), env, sandbox_id)
        try:
            await asyncio.to_thread((root / "kill_guard.sh").write_text, KILL_GUARD)
            await sandbox._session.start(sandbox.workdir)
        except BaseException:
            await sandbox.close()
            raise
        return sandbox

    async def close(self) -> None:
        """Kill every process of the sandbox and remove its folder; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._session.close()
        await asyncio.to_thread(self._kill_all, None)
        for proc in self._procs.values():
            try:
                await asyncio.to_thread(proc.wait, 5)
            except subprocess.TimeoutExpired:
                pass
        await asyncio.to_thread(_remove_tree, self.root)
        for fd in self._lock_fds:
            os.close(fd)
        self._lock_fds = []

    async def fork(self, n: int, factory: SandboxFactory | None = None) -> list[Sandbox]:
        """Not on this backend: its sandboxes are folders with their own uids and path maps, and
        a copy of one would need both rewritten; the Docker backend forks."""
        raise ForkUnsupportedError(f"the local backend cannot fork sandbox {self.id}: use the docker backend "
                                   "(--backend docker) for branched episodes")

    async def __aenter__(self) -> LocalSandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def is_alive(self) -> bool:
        return not self._closed and self._session.is_open()

    @property
    def last_ok(self) -> float:
        return self._session.last_ok

    # -- commands and files ----------------------------------------------------------------
    async def exec(self, cmd: str, timeout: float = 60.0,
                   output_limit: int = DEFAULT_OUTPUT_LIMIT) -> ExecResult:
        if self._closed:
            raise SandboxError(f"sandbox {self.id} is closed")
        note = ""
        if self._session.shell_pid and not self._session.is_open():  # killed (extract_patch's kill -9 -1)
            await self._session.close()
            note = RESTARTED
        try:
            result = await self._session.exec(self.to_host(cmd), timeout, output_limit)
        except (BrokenPipeError, ConnectionResetError):  # it died before the command reached it
            await self._session.close()
            note = RESTARTED
            try:
                result = await self._session.exec(self.to_host(cmd), timeout, output_limit)
            except OSError as exc:
                raise SandboxError(f"sandbox {self.id}: {exc}") from exc
        except OSError as exc:
            raise SandboxError(f"sandbox {self.id}: {exc}") from exc
        if note and not result.note:
            result.note = note
        result.output = self.to_sandbox(result.output)
        result.note = self.to_sandbox(result.note)
        if result.timed_out:
            result.limit = "timeout"
        elif result.truncated:
            result.limit = "output"
        return result

    async def host_exec(self, argv: list[str], timeout: float = 60.0, output_limit: int = DEFAULT_OUTPUT_LIMIT,
                        env: dict[str, str] | None = None) -> HostResult:
        """`argv` (paths translated) as its own process, never through the agent's session, as the
        sandbox's user with a clean environment (PATH=HOST_PATH, HOME=/, `env`). Not as root,
        its bash `kill` is the sandbox-only one (KILL_GUARD), so `kill -9 -1` ends this sandbox's
        processes and no other."""
        if self._closed:
            raise SandboxError(f"sandbox {self.id} is closed")
        clean = {"PATH": HOST_PATH, "HOME": "/", "LC_ALL": "C", MARK_ENV: self.id,
                 **({} if self.uid is not None else {"BASH_ENV": self._env["BASH_ENV"]}), **(env or {})}
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *(self.to_host(a) for a in argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=clean, cwd="/", start_new_session=True, **self._as_user())
        out, err = bytearray(), bytearray()
        truncated = timed_out = False

        async def pump(stream: asyncio.StreamReader, target: bytearray, cap: int) -> bool:
            while chunk := await stream.read(1 << 16):
                room = cap - len(target)
                target += chunk[:max(room, 0)]
                if len(chunk) > room:
                    return True
            return False

        assert proc.stdout is not None and proc.stderr is not None
        pumps = asyncio.gather(pump(proc.stdout, out, output_limit), pump(proc.stderr, err, 65536))
        try:  # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancel that lands as it ends
            async with asyncio.timeout(timeout):
                over, _ = await asyncio.shield(pumps)
            truncated = over
            if over:
                _killpg(proc.pid)
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            timed_out = True
            _killpg(proc.pid)
            pumps.cancel()
            await asyncio.gather(pumps, return_exceptions=True)
            await proc.wait()
        except asyncio.CancelledError:  # the episode was stopped: the shielded command must not outlive it
            _killpg(proc.pid)
            pumps.cancel()
            raise
        code = proc.returncode
        if code is not None and code < 0:
            code = 128 - code
        return HostResult(exit_code=None if timed_out else code, stdout=bytes(out),
                          stderr=self.to_sandbox(err.decode("utf-8", "surrogateescape")).encode(
                              "utf-8", "surrogateescape"),
                          timed_out=timed_out, truncated=truncated, seconds=time.perf_counter() - started)

    async def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Write as the sandbox's user (so a symlink the agent planted leads nowhere it could not
        write itself); a path it may not write raises PermissionError. An executable file is a
        script to run (the grader's eval script names /testbed and /tmp): its paths are translated
        as a command's are; any other file (patches, sources) is written byte for byte."""
        payload = data.encode() if isinstance(data, str) else data
        if mode & 0o111:  # a script the host runs (the grader's eval script): its paths as a command's
            payload = self.to_host(payload.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
        target = self._host_path(path)
        parent = os.path.dirname(target) or "/"
        script = 'mkdir -p -- "$1" && cat >| "$2" && chmod "$3" "$2"'
        res = await self._run_as_user(["/bin/sh", "-c", script, "write", parent, target, f"{mode:o}"], payload)
        if res.returncode != 0:
            raise PermissionError(f"cannot write {path} in sandbox {self.id}: "
                                  f"{self.to_sandbox(res.stderr.decode(errors='replace')).strip()[-300:]}")

    async def read_file(self, path: str, max_bytes: int = READ_FILE_MAX) -> bytes:
        """One regular file's bytes, read as the sandbox's user; past `max_bytes` refused before reading."""
        target = self._host_path(path)
        script = ('[ -e "$1" ] || exit 3; [ -f "$1" ] || exit 4; s=$(stat -L -c %s -- "$1") || exit 5; '
                  '[ "$s" -le "$2" ] || { echo "$s"; exit 6; }; exec cat -- "$1"')
        res = await self._run_as_user(["/bin/sh", "-c", script, "read", target, str(max_bytes)], b"")
        if res.returncode == 3:
            raise FileNotFoundError(f"{path} does not exist in sandbox {self.id}")
        if res.returncode == 4:
            raise IsADirectoryError(f"{path} is not a regular file in sandbox {self.id}")
        if res.returncode == 6:
            raise FileTooLargeError(f"{path} is {res.stdout.decode().strip()} bytes, over the {max_bytes}-byte "
                                    f"limit of a read from sandbox {self.id}")
        if res.returncode != 0:
            raise PermissionError(f"cannot read {path} in sandbox {self.id}: {res.stderr.decode(errors='replace')}")
        return res.stdout

    def _host_path(self, path: str) -> str:
        if not path.startswith("/"):
            path = f"{self.spec.workdir.rstrip('/')}/{path}"
        return self.to_host(path)

    async def _run_as_user(self, argv: list[str], stdin: bytes) -> subprocess.CompletedProcess:
        if self._closed:
            raise SandboxError(f"sandbox {self.id} is closed")
        env = {"PATH": HOST_PATH, "LC_ALL": "C", MARK_ENV: self.id}
        proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                    stderr=subprocess.PIPE, env=env, cwd="/",
                                                    start_new_session=True, **self._as_user())
        out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
        return subprocess.CompletedProcess(argv, proc.returncode or 0, out, err)

    # -- processes -------------------------------------------------------------------------
    def _as_user(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.uid, "extra_groups": []}

    def pids(self) -> list[int]:
        """This sandbox's processes: those of its uid (root), else those carrying its mark."""
        return sandbox_pids(self.uid, self.id)

    def _kill_all(self, keep: int | None) -> None:
        """SIGKILL every process of the sandbox but `keep`, three passes (a fork can race one)."""
        for _ in range(3):
            for pid in self.pids():
                if pid != keep:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass

    # -- plumbing for ShellSession ---------------------------------------------------------
    async def _open_shell(self) -> tuple[str, socket.socket]:
        parent, child = socket.socketpair()
        try:
            proc = subprocess.Popen(["/bin/bash", "--noprofile", "--norc"], stdin=child, stdout=child, stderr=child,
                                    cwd=self.workdir, env=self._env, start_new_session=True, close_fds=True,
                                    **self._as_user())
        except OSError as exc:
            parent.close()
            raise SandboxError(f"sandbox {self.id}: cannot start a shell: {exc}") from exc
        finally:
            child.close()
        self._procs[str(proc.pid)] = proc
        return str(proc.pid), parent

    async def _run_detached(self, argv: list[str]) -> None:
        """The session asks for KILL_SCRIPT (every process but the shell $1): done here, for this
        sandbox's processes only (the script would reach every process of the machine)."""
        keep = int(argv[-1]) if argv and argv[-1].isdigit() and argv[-1] != "0" else None
        await asyncio.to_thread(self._kill_all, keep)

    async def _exec_exit_code(self, exec_id: str) -> int | None:
        proc = self._procs.pop(exec_id, None)
        if proc is None:
            return None
        try:
            code = await asyncio.to_thread(proc.wait, 5)
        except subprocess.TimeoutExpired:
            return None
        return 128 - code if code < 0 else code


def sandbox_pids(uid: int | None, sandbox_id: str) -> list[int]:
    """Processes of `uid` (its own uid, as root), else those whose environment has the sandbox's mark."""
    mark = f"{MARK_ENV}={sandbox_id}".encode()
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if uid is not None:
                if os.stat(entry.path).st_uid == uid:
                    found.append(int(entry.name))
            else:
                with open(f"{entry.path}/environ", "rb") as fh:
                    if mark in fh.read().split(b"\0"):
                        found.append(int(entry.name))
        except OSError:
            continue
    return found


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _make_root(root: Path, tree: Path, uid: int | None, meta: dict[str, Any]) -> int:
    """The sandbox's folder (its lock held, so reaping leaves it alone): returns the lock's fd."""
    sandboxes = root.parent
    sandboxes.mkdir(parents=True, exist_ok=True)
    sandboxes.chmod(0o711)  # passable, not listable, by the sandboxes' users
    lock_fd = os.open(f"{root}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        Path(f"{root}.json").write_text(json.dumps(meta))
        root.mkdir(mode=0o700)
        subprocess.run(["cp", "-a", str(tree), str(root / "testbed")], check=True, capture_output=True)
        for sub in ("tmp", "home", "opt/envfarm"):
            (root / sub).mkdir(parents=True)
        local_trees.write_git_config(root / "home")
        if uid is not None:
            subprocess.run(["chown", "-R", f"{uid}:{uid}", str(root)], check=True, capture_output=True)
    except BaseException:
        _remove_tree(root)
        os.close(lock_fd)
        raise
    return lock_fd


def _remove_tree(root: Path) -> None:
    def writable(func, path, _exc) -> None:  # a folder the agent made read-only
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            func(path)
        except OSError:
            pass

    if root.exists():
        shutil.rmtree(root, onerror=writable)
    for suffix in (".json", ".lock"):
        try:
            os.unlink(f"{root}{suffix}")
        except FileNotFoundError:
            pass


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LocalBackend(SandboxBackend):
    """Local working copies, one uid each when root: see the module's docstring (refused unless
    acknowledged). Images are envfarm's repository images only, rebuilt on the host as trees."""

    name = "local"
    simulated = False
    leaves_orphans = True
    max_starting = 8
    create_rate = 50.0

    def __init__(self, config: LocalBackendConfig | None = None) -> None:
        from envfarm.sandbox.backends import LocalBackendConfig

        self.config = config or LocalBackendConfig()
        reason = refusal_reason(self.config)
        if reason:
            raise UnisolatedBackendRefused(reason)
        self.dir = local_trees.local_dir(self.config.root)
        self.as_root = os.geteuid() == 0
        self._python: str | None = None
        self._prepared: dict[str, tuple[Path, Path]] = {}

    async def create(self, spec: SandboxSpec, task_id: str = "", *, owner: str | None = None,
                     run: str = "adhoc") -> Sandbox:
        return await LocalSandbox.create(spec, self, owner=owner, run=run, task=task_id)

    # -- trees, environments and users -----------------------------------------------------
    def prepare(self, image: str) -> tuple[Path, Path]:
        """(tree, test environment) for an image, built on first use. Blocking."""
        if image not in self._prepared:
            project = local_trees.project_for_image(image)
            tree, _ = local_trees.build_tree(project, self.dir)
            env = local_trees.build_test_env(project, self.python(), self.dir)
            self._prepared[image] = (tree, env)
        return self._prepared[image]

    def base_commit(self, image: str) -> str:
        """The commit the image's tree starts at (the image's `git rev-parse HEAD`)."""
        project = local_trees.project_for_image(image)
        return local_trees.build_tree(project, self.dir)[1]

    def python(self) -> str:
        """The first interpreter the sandboxes' user can run (see local_trees.candidate_pythons)."""
        if self._python is None:
            probe_uid = None
            if self.as_root:
                probe_uid, fd = self.allocate_uid()
                os.close(fd) if fd is not None else None
            tried = []
            for python in local_trees.candidate_pythons(self.config.python):
                user = {} if probe_uid is None else {"user": probe_uid, "group": probe_uid, "extra_groups": []}
                try:
                    ok = subprocess.run([python, "-c", "import venv"], capture_output=True, cwd="/", timeout=60,
                                        env={"PATH": HOST_PATH}, **user).returncode == 0
                except (OSError, subprocess.SubprocessError):
                    ok = False
                if ok:
                    self._python = python
                    break
                tried.append(python)
            else:
                raise SandboxError(f"no Python interpreter the sandbox's user can run: tried {tried}; "
                                   "set ENVFARM_LOCAL_PYTHON or LocalBackendConfig.python")
        return self._python

    def allocate_uid(self) -> tuple[int | None, int | None]:
        """A uid no account and no process uses, held by a lock until the sandbox holds its own:
        (uid, the lock's fd); (None, None) when not root."""
        if not self.as_root:
            return None, None
        locks = self.dir / "uids"
        locks.mkdir(parents=True, exist_ok=True)
        busy = {_owner(e.path) for e in os.scandir("/proc") if e.name.isdigit()}
        for uid in range(self.config.uid_base, self.config.uid_base + self.config.uid_count):
            if uid in busy or _has_account(uid):
                continue
            fd = os.open(locks / f"{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            return uid, fd
        raise SandboxError(f"no free uid in {self.config.uid_base}..{self.config.uid_base + self.config.uid_count}")

    # -- SandboxBackend --------------------------------------------------------------------
    def reap(self, *, owner: str | None = None, run: str | None = None,
             older_than_s: float | None = None) -> int:
        """Remove sandboxes of `owner` / `run` whose owning process is gone (their lock is free)."""
        removed = 0
        now = time.time()
        for meta_path in (self.dir / "sandboxes").glob("*.json"):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            if (owner and meta.get("owner") != owner) or (run and meta.get("run") != run):
                continue
            if older_than_s is not None and now - float(meta.get("created", now)) < older_than_s:
                continue
            root = meta_path.with_suffix("")
            fd = os.open(f"{root}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue  # its owner still runs and holds it
            try:
                uid = meta.get("uid")
                for _ in range(3):
                    for pid in sandbox_pids(uid, meta.get("id", "")):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except OSError:
                            pass
                _remove_tree(root)
                removed += 1
            finally:
                os.close(fd)
        return removed

    def ensure_image(self, image: str, registry: str | None = None, tarball: bytes | None = None,
                     peers: Sequence[Any] = ()) -> str:
        if image in self._prepared:
            return "present"
        self.prepare(image)
        return "built"

    def image_user(self, image: str) -> str:
        return "agent"


def _owner(path: str) -> int | None:
    try:
        return os.stat(path).st_uid
    except OSError:
        return None


def _has_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False
