"""A sandbox handed out by a WarmPool: closing it gives it back to the pool (which discards it)."""

from __future__ import annotations

from envfarm.farm.pool import WarmPool
from envfarm.sandbox.base import DEFAULT_OUTPUT_LIMIT, ExecResult, HostResult, Sandbox, SandboxFactory, SandboxSpec


class PooledSandbox:
    """Forwards the Sandbox protocol to a pooled sandbox; `close()` releases it exactly once."""

    def __init__(self, inner: Sandbox, pool: WarmPool) -> None:
        self._inner = inner
        self._pool = pool
        self._released = False
        self.id = inner.id
        self.simulated = inner.simulated

    def is_alive(self) -> bool:
        return self._inner.is_alive()

    @property
    def last_ok(self) -> float:
        return self._inner.last_ok

    async def exec(self, cmd: str, timeout: float = 60.0, output_limit: int = DEFAULT_OUTPUT_LIMIT) -> ExecResult:
        return await self._inner.exec(cmd, timeout, output_limit)

    async def host_exec(self, argv: list[str], timeout: float = 60.0, output_limit: int = DEFAULT_OUTPUT_LIMIT,
                        env: dict[str, str] | None = None) -> HostResult:
        return await self._inner.host_exec(argv, timeout, output_limit, env)

    async def read_file(self, path: str) -> bytes:
        return await self._inner.read_file(path)

    async def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        await self._inner.write_file(path, data, mode)

    async def fork(self, n: int, factory: SandboxFactory | None = None) -> list[Sandbox]:
        return await self._inner.fork(n, factory)

    async def close(self) -> None:
        if not self._released:
            self._released = True
            await self._pool.release(self._inner)

    def __getattr__(self, name: str):  # backend extras (e.g. docker_exec, container)
        return getattr(self._inner, name)


def pool_factory(pool: WarmPool) -> SandboxFactory:
    """A SandboxFactory (spec, task_id) -> Sandbox drawing from `pool`."""

    async def factory(spec: SandboxSpec, task_id: str) -> Sandbox:
        return PooledSandbox(await pool.acquire(spec.image, task_id, spec.user), pool)

    return factory
