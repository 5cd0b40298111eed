"""GradeWorker: grades predictions on this node's Docker engine, a bounded number at a time.

The same object grades in-process (local mode) and inside one Ray actor per node (cluster mode).
Three things make it faster than one container after another:

- A prediction's sandbox is created as soon as the prediction is taken (up to `workers` ahead
  of the gradings running), so starting a container overlaps the previous tests instead of
  preceding them; creates go through admission control, as the farm's do.
- Images are checked (and built or pulled where envfarm knows how) once per image, not once
  per instance.
- A sandbox that fails before the patched code runs (INFRASTRUCTURE) is graded again on a new
  one, after 1, 2, 4 ... s; what is left after `retries` comes back as it is (masked).

`envfarm.tasks.grading.grade` keeps only the tail of the test log in its GradeResult; the whole
log, which swebench writes to test_output.txt, is taken from the grading sandbox's eval command
as it passes (`_Recording`).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

from swebench.harness.constants import TEST_EXIT_CODE_VAR

from envfarm.errors import ErrorKind, ImageMissingError, SandboxError
from envfarm.farm.admission import AdmissionControl
from envfarm.sandbox.backends import DockerBackendConfig, make_backend
from envfarm.sandbox.base import DEFAULT_OUTPUT_LIMIT, ExecResult, Sandbox, SandboxSpec
from envfarm.tasks.grading import EVAL_PATH, GradeResult, grade, harness_log, harness_script, screen_patch
from envfarm.tasks.schema import Task

# swebench's words for a test run killed at its time limit (run_instance appends them to test_output.txt)
TIMEOUT_LINE = "\n\nTimeout error: {timeout} seconds exceeded."


@dataclass(frozen=True)
class WorkerConfig:
    """How a node grades; plain data, so it travels to Ray actors as it is."""

    run: str  # the run id: the sandboxes' run label (`python -m envfarm.gc --run <run id>` finds them)
    workers: int = 2  # gradings at once on this node
    timeout: float = 1800.0  # seconds the tests may run (swebench's default)
    retries: int = 2  # further attempts after an infrastructure failure
    retry_backoff_s: float = 1.0
    registry: str | None = None  # where to pull missing task images from
    cpus: float = 1.0  # limits of each grading sandbox, as the farm's --cpus/--memory-per-sandbox
    memory: str = "2g"


@dataclass
class Graded:
    """One prediction's GradeResult, the whole test log, and how it was had."""

    result: GradeResult
    test_output: str | None = None  # the log swebench's parser read; None when the tests never ran
    attempts: int = 1
    node: str = field(default_factory=socket.gethostname)


@dataclass
class _EvalRecord:
    output: str | None = None
    exit_code: int | None = None


class _Recording:
    """A sandbox that keeps the output of grading's eval command and is removed in the background
    (the verdict need not wait for the container's removal); everything else passes through."""

    def __init__(self, inner: Sandbox, record: _EvalRecord, closing: set[asyncio.Task]) -> None:
        self._inner, self._record, self._closing = inner, record, closing
        self._closed = False

    async def exec(self, cmd: str, timeout: float = 60.0, output_limit: int = DEFAULT_OUTPUT_LIMIT) -> ExecResult:
        res = await self._inner.exec(cmd, timeout, output_limit)
        if cmd.endswith(f"bash {EVAL_PATH}"):
            self._record.output, self._record.exit_code = res.output, res.exit_code
        return res

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            task = asyncio.get_running_loop().create_task(self._inner.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def __getattr__(self, name: str):  # the rest of the Sandbox protocol and backend extras (container)
        return getattr(self._inner, name)


class GradeWorker:
    """Grades on this node: at most `workers` at once, `workers` more with their sandbox starting."""

    def __init__(self, config: WorkerConfig, owner: str | None = None) -> None:
        """`owner`: the owner label of its sandboxes (a Ray host's id; default: this process)."""
        if config.workers < 1:
            raise ValueError("workers must be at least 1")
        self.config = config
        self.backend = make_backend(DockerBackendConfig())
        self._create_sandbox = self.backend.factory(owner=owner, run=config.run)
        self.admission = AdmissionControl(*self.backend.admission())
        self._grading = asyncio.Semaphore(config.workers)
        self._window = asyncio.Semaphore(2 * config.workers)  # grading + sandbox starting ahead
        self._images: dict[str, str | None] = {}  # image -> None when usable, else why not
        self._image_locks: dict[str, asyncio.Lock] = {}
        self._closing: set[asyncio.Task] = set()  # removals of used sandboxes, in the background

    async def ensure_image(self, image: str, tarball: bytes | None = None) -> str | None:
        """None when `image` is usable here (present, pulled, built or loaded), else why not; once per image
        unless a tarball comes to fill a gap."""
        lock = self._image_locks.setdefault(image, asyncio.Lock())
        async with lock:
            if image not in self._images or (self._images[image] and tarball is not None):
                try:
                    await asyncio.to_thread(self.backend.ensure_image, image, self.config.registry, tarball)
                    self._images[image] = None
                except ImageMissingError as exc:
                    self._images[image] = str(exc)
                except SandboxError as exc:  # the engine did not answer: ask again next time
                    return f"could not check image {image!r}: {exc}"
            return self._images[image]

    async def grade(self, task: Task, patch: str) -> Graded:
        """Grade one patch; never raises for a failure of the sandbox or the image (see Graded.result)."""
        if not patch.strip():  # as swebench: git apply and patch refuse a diff with nothing in it
            return Graded(GradeResult(instance_id=task.instance_id, error_kind=ErrorKind.PATCH_FAILED,
                                      error="the patch is only whitespace: no diff to apply"), attempts=0,
                          node=_node_id())
        async with self._window:
            missing = await self.ensure_image(task.image)
            if missing:
                return Graded(GradeResult(instance_id=task.instance_id, error_kind=ErrorKind.IMAGE_MISSING,
                                          error=missing), attempts=0, node=_node_id())
            refused = isinstance(screen_patch(task, patch), GradeResult)  # refused without a sandbox
            ahead = None if refused else _Ahead(asyncio.ensure_future(self._new_sandbox(task)))
            try:
                async with self._grading:
                    return await self._grade_with_retries(task, patch, ahead)
            finally:
                if ahead is not None:
                    await ahead.discard()

    async def _grade_with_retries(self, task: Task, patch: str, ahead: _Ahead | None) -> Graded:
        attempt = 0
        while True:
            attempt += 1
            record = _EvalRecord()
            factory = self._factory(task, ahead if attempt == 1 else None, record)
            try:
                result = await grade(task, patch, factory, timeout=self.config.timeout)
            except ImageMissingError as exc:
                result = GradeResult(instance_id=task.instance_id, error_kind=ErrorKind.IMAGE_MISSING, error=str(exc))
            except Exception as exc:  # noqa: BLE001 - one instance's surprise must not end a run of thousands
                result = GradeResult(instance_id=task.instance_id, error_kind=ErrorKind.INFRASTRUCTURE,
                                     error=f"grading raised {exc.__class__.__name__}: {exc}")
            kind = result.error_kind
            if kind is None or not kind.retryable or attempt > self.config.retries:
                return Graded(result, self._test_output(task, result, record), attempt, _node_id())
            await asyncio.sleep(self.config.retry_backoff_s * 2 ** (attempt - 1))

    def _factory(self, task: Task, ahead: _Ahead | None, record: _EvalRecord):
        async def factory(spec: SandboxSpec, task_id: str) -> Sandbox:
            sandbox = None
            if ahead is not None:
                sandbox = await ahead.take()  # raises the create's SandboxError: grade() reports it
                if not sandbox.is_alive():
                    await sandbox.close()
                    sandbox = None
            if sandbox is None:
                sandbox = await self._new_sandbox(task)
            return _Recording(sandbox, record, self._closing)  # type: ignore[return-value]

        return factory

    async def _new_sandbox(self, task: Task) -> Sandbox:
        async with self.admission.admit():
            spec = SandboxSpec(image=task.image, cpus=self.config.cpus, memory=self.config.memory)
            return await self._create_sandbox(spec, task.instance_id)

    def _test_output(self, task: Task, result: GradeResult, record: _EvalRecord) -> str | None:
        """The log as swebench's parser read it (envfarm's markers and exit status), or None."""
        if record.output is None:
            return None
        if result.error_kind == ErrorKind.TIMEOUT:
            return record.output + TIMEOUT_LINE.format(timeout=f"{self.config.timeout:g}")
        known = TEST_EXIT_CODE_VAR in harness_script(task)
        return harness_log(record.output, record.exit_code if known else None)

    async def drain(self) -> None:
        """Wait for the background removals of used sandboxes (before reporting what is left)."""
        await asyncio.gather(*self._closing, return_exceptions=True)

    def reap(self, owner: str | None = None) -> int:
        """Remove this run's sandboxes still on this node (after an interruption; of `owner` only when
        given); how many. Blocking: call it from a thread on an event loop."""
        return self.backend.reap(owner=owner, run=self.config.run)


class _Ahead:
    """A sandbox being created ahead of its grading: taken once by grading, else closed unused."""

    def __init__(self, future: asyncio.Future) -> None:
        self.future, self.taken = future, False

    async def take(self) -> Sandbox:
        self.taken = True
        return await self.future

    async def discard(self) -> None:
        """Close the sandbox if grading never took it (an interruption, a retry's fresh one)."""
        if self.taken:
            return
        self.future.cancel()
        try:
            sandbox = await self.future
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - a create that failed left nothing
            return
        await sandbox.close()


def _node_id() -> str:
    """The Ray node this runs on when inside Ray, else the host name (for run_instance.log)."""
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray the host name will do
        pass
    return socket.gethostname()
