"""The Sandbox contract every backend (docker, sim) fulfils, and the SandboxBackend that makes them.

A sandbox is one isolated copy of a repository that an agent may run commands in. Everything is
async because a host multiplexes thousands of sandboxes on one event loop. A backend is the
one object that knows how its sandboxes are made, reaped and supplied with images; which one a
run uses is chosen once, from its typed config (`envfarm.sandbox.backends.make_backend`), and
no caller asks for a backend by name again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from envfarm.errors import ForkUnsupportedError, ImageMissingError, SandboxBrokenError, SandboxError

__all__ = ["ExecResult", "ForkUnsupportedError", "HostResult", "ImageMissingError", "LIMITS", "Sandbox",
           "SandboxBrokenError", "SandboxError", "SandboxSpec", "parse_size"]

DEFAULT_OUTPUT_LIMIT = 64 * 1024


@dataclass
class ExecResult:
    """What one command produced.

    `output` is stdout and stderr interleaved as the terminal would show them, decoded as UTF-8
    with undecodable bytes replaced. When `truncated`, the middle of the output was cut and
    `output` says how many bytes were dropped.
    """

    output: str
    exit_code: int | None
    timed_out: bool = False
    truncated: bool = False
    seconds: float = 0.0
    note: str = ""  # what the session had to do besides running the command (e.g. restart)
    limit: str | None = None  # the limit the command ran into: one of LIMITS, or None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass
class HostResult:
    """What one host command (`Sandbox.host_exec`) produced: stdout and stderr kept apart, as bytes.

    `truncated`: stdout passed the caller's limit and the rest was not read.
    """

    exit_code: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: bool = False
    truncated: bool = False
    seconds: float = 0.0


# In an image adapted by envfarm (envfarm.sandbox.foreign_images): the shell lines that activate
# the test environment, sourced by every shell session.
ACTIVATE_PATH = "/opt/envfarm/activate"

# Directories searched for programs by host commands, whatever PATH the agent exported.
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# What a command can run into: its time limit, the output cap, or one of the sandbox's cgroup
# limits (memory: the OOM killer ended a process; pids: a fork failed; disk: the writable layer
# outgrew SandboxSpec.disk and the command was killed). The agent sees it; nothing is retried.
LIMITS = ("timeout", "output", "memory", "pids", "disk")


class FileTooLargeError(OSError):
    """A file past the size a read may transfer to the host."""


@dataclass
class SandboxSpec:
    """How to start a sandbox: image, limits and the labels that name its owner."""

    image: str
    cpus: float = 1.0
    memory: str = "2g"
    pids: int = 512
    # Who runs the commands: "agent" in an agent's sandbox; None: the image's own user (as
    # swebench's harness runs the eval script: envfarm's images say `agent`, public ones root).
    user: str | None = "agent"
    workdir: str = "/testbed"
    # For an image envfarm did not build (see envfarm.sandbox.foreign_images): the commit the
    # repository starts at (nothing after it stays reachable; "" for HEAD) and the shell lines
    # that activate its test environment in every shell session.
    base_commit: str = ""
    activation: str = ""
    network: bool = False
    # The engine's OCI runtime for this sandbox (e.g. "crun"; None: the backend's, else the engine's default).
    runtime: str | None = None
    # Cap on the container's writable layer. overlay2 on ext4 has no per-container quota
    # (--storage-opt size needs xfs with pquota), so the backend measures the layer while commands
    # run and kills them past the cap; the overshoot is bounded by write speed x disk_check_s.
    disk: str | None = "4g"
    # Cap on the files, folders and links the writable layer may hold (empty files cost no bytes
    # but an inode each); checked with `disk`, from the layer's directory on this machine.
    inodes: int | None = 100_000
    disk_check_s: float = 1.0
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    # A sandbox never outlives its owner (the process that created it) for long: it removes
    # itself this many seconds after its owner is gone, however the owner ended (None: the
    # backend's default; Docker's is $ENVFARM_SANDBOX_GRACE_S or 10 s).
    orphan_grace_s: float | None = None
    # ... and this many seconds after it started whatever happens (None: the backend's default;
    # Docker's is $ENVFARM_SANDBOX_MAX_LIFETIME_S or 4 h, well above an episode and its grading).
    max_lifetime_s: float | None = None


@runtime_checkable
class Sandbox(Protocol):
    """One isolated repository copy with a persistent shell session.

    Besides commands and files, a sandbox answers what warm pools and set-up rely on:
    `is_alive()` and `last_ok` let a pool hand out a warm sandbox without a command round trip
    when it answered one recently, and `simulated` tells set-up that there is no repository to
    check (the sim backend's sandboxes only pay the time of the commands).
    """

    id: str
    # True when the sandbox holds no real repository (sim backend): set-up checks that read
    # one are skipped, only their time is spent.
    simulated: bool

    def is_alive(self) -> bool:
        """Cheap liveness without a round trip: not closed and its shell still connected. A
        pool drops a warm sandbox that says False and creates another."""
        ...

    @property
    def last_ok(self) -> float:
        """time.monotonic() of the last command that came back: a pool trusts `is_alive()` alone
        for a while after it, then checks with a real command."""
        ...

    async def exec(self, cmd: str, timeout: float = 60.0,
                   output_limit: int = DEFAULT_OUTPUT_LIMIT) -> ExecResult: ...

    async def host_exec(self, argv: list[str], timeout: float = 60.0, output_limit: int = DEFAULT_OUTPUT_LIMIT,
                        env: dict[str, str] | None = None) -> HostResult:
        """Run a command of the host's own (never the agent's): its own process, outside the
        agent's shell session, with exactly `argv` and a clean environment (`env`, plus PATH=
        HOST_PATH unless given; nothing the container or the agent's session exported). What
        the host runs in an agent's sandbox after the agent acted goes through here, so that
        shell functions, aliases, session variables and exported settings cannot steer it."""
        ...

    async def read_file(self, path: str) -> bytes: ...

    async def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None: ...

    async def close(self) -> None: ...

    async def fork(self, n: int, factory: SandboxFactory | None = None) -> list[Sandbox]:
        """n independent sandboxes holding this one's state at this moment: its files (the
        repository and whatever else was changed where its user may write) and its shell state
        (working directory, exported variables, umask), not its running processes. Children are
        made as any sandbox (by `factory`, e.g. a warm pool's, else the backend's create with
        this sandbox's owner and run), never see each other's changes nor need the parent after,
        and are each closed like any sandbox. Call it between commands. A backend that cannot
        fork raises ForkUnsupportedError naming itself."""
        ...


# Makes one sandbox: (spec, task id) -> a started Sandbox. What a CodingEnv, grading and a warm
# pool take; a backend binds its owner and run labels into one with `SandboxBackend.factory`.
SandboxFactory = Callable[[SandboxSpec, str], Awaitable[Sandbox]]


class SandboxBackend(ABC):
    """One kind of sandbox (docker, sim): how they are created, reaped and given their images.

    Why an object: the farm, pools, grading and garbage collection all differ by backend, and
    asking "is it docker?" in each of them spreads one decision over many files. A backend is
    built once from its typed config (`envfarm.sandbox.backends.make_backend`) and carries
    everything that differs: creates, reaping of what a crashed owner left, image supply, and
    the admission defaults that protect its engine. Grading differs too, but graders live in
    the tasks layer above: see `envfarm.tasks.grading.grader_for`.
    """

    name: ClassVar[str]
    # Sandboxes hold no repository (see Sandbox.simulated).
    simulated: ClassVar[bool] = False
    # Sandboxes outlive the process that made them (containers do, objects in memory do not):
    # only then can a crash leave orphans, and only then is reaping across nodes worth a call.
    leaves_orphans: ClassVar[bool] = True
    # Admission defaults per host: creates starting at once, and creates per second.
    max_starting: ClassVar[int]
    create_rate: ClassVar[float]

    @abstractmethod
    async def create(self, spec: SandboxSpec, task_id: str = "", *, owner: str | None = None,
                     run: str = "adhoc") -> Sandbox:
        """Start one sandbox; `owner` and `run` label it so that `reap` can find it later."""

    @abstractmethod
    def reap(self, *, owner: str | None = None, run: str | None = None,
             older_than_s: float | None = None) -> int:
        """Remove this machine's sandboxes of `owner` / `run` (older than `older_than_s`); how many.
        Blocking: call it from a thread on an event loop."""

    @abstractmethod
    def ensure_image(self, image: str, registry: str | None = None, tarball: bytes | None = None,
                     peers: Sequence[Callable[[str], Iterable[bytes]]] = ()) -> str:
        """Make `image` usable here; returns how (present, pulled, peer, built, loaded) or raises
        ImageMissingError. `peers` stream the image from nodes that have it (`export_image`
        there). Blocking: call it from a thread on an event loop."""

    def held_images(self, images: Iterable[str]) -> set[str]:
        """Which of `images` this node can start sandboxes of without fetching anything: where
        images never travel (simulated, local trees), all of them. Blocking."""
        return set(images)

    def export_image(self, image: str) -> Iterator[bytes]:
        """`image` as a stream a peer's `ensure_image` loads; only backends whose images travel."""
        raise NotImplementedError(f"the {self.name} backend has no images to export")

    def adapt_image(self, image: str, base_commit: str = "", activation: str = "") -> str:
        """The image to start a task's sandboxes from: `image` itself, or where the backend must
        first adapt an image it did not build, the adapted one (see SandboxSpec.base_commit).
        Blocking: call it from a thread on an event loop."""
        return image

    def needs_adapting(self, image: str) -> bool:
        """Whether `adapt_image` would make a new image of `image` (one envfarm did not build)."""
        return False

    def image_user(self, image: str) -> str:
        """Who runs a sandbox's commands when its spec says `user=None`: the image's own user."""
        return "agent"

    def factory(self, *, owner: str | None = None, run: str = "adhoc") -> SandboxFactory:
        """A SandboxFactory that creates this backend's sandboxes under `owner` and `run`."""

        async def create(spec: SandboxSpec, task_id: str) -> Sandbox:
            return await self.create(spec, task_id, owner=owner, run=run)

        return create

    def admission(self, max_starting: int | None = None, create_rate: float | None = None) -> tuple[int, float]:
        """The given admission settings, with this backend's defaults where one is None."""
        return max_starting or self.max_starting, create_rate or self.create_rate


def parse_size(size: str) -> int:
    """'4g', '512m', '100k' or a plain byte count, as bytes (Docker's units, powers of 1024)."""
    text = size.strip().lower().removesuffix("b")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)
