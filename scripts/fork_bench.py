"""Sandbox.fork measured for scripts/bench_sandbox.py: 8 children, small and 100 MB changes,
against 8 sandboxes replaying the parent's commands and against `docker commit`.

The parent plays an agent's first turns on the inflection repository (PREFIX: read, run the
tests, edit, run them again), then writes the size's extra bytes. Children come warm (created
before the fork, as a warm pool holds them) unless the figure says cold; the CPU of a fork
counts their creation. CPU is counted for this process, the engine and the containers involved
(scripts/engine_cpu.py): the shared machine's own busy time is mostly others'. The replay
baseline gives 8 warm fresh sandboxes the same PREFIX and extra bytes (once: it runs the tests
16 times); `docker commit` makes an image of the parent's writable layer and starts 8 children
from it (the mechanism not chosen; shell state not carried). Forking leaves the parent as it
was, so each size's parent is forked every way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Callable

from engine_cpu import engine_cpu_s

from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox, docker_client

PREFIX = [
    "cd /testbed && git status --short | head -5 && ls",
    "grep -n 'def camelize' -A12 inflection/__init__.py | head -20",
    "python3 -m pytest -q -x -p no:cacheprovider 2>&1 | tail -2",
    "sed -i 's/^def camelize(string: str, uppercase_first_letter: bool = True) -> str:/&"
    "  # checked/' inflection/__init__.py && echo '# note' >> inflection/__init__.py",
    "python3 -m pytest -q -x -p no:cacheprovider 2>&1 | tail -2",
    "export STEP=5 FOCUS=camelize && mkdir -p /tmp/work && cp -r inflection /tmp/work/ && cd inflection",
]
EXTRA = {"small": "head -c 2000000 /dev/urandom > /tmp/work/cache.bin",
         "100mb": "head -c 100000000 /dev/urandom > /testbed/big.bin"}
CHECK = "test -f /tmp/work/cache.bin -o -f /testbed/big.bin && echo \"$STEP $PWD\""


async def _parent(image: str, size: str) -> DockerSandbox:
    sb = await DockerSandbox.create(SandboxSpec(image=image), run="bench")
    for cmd in PREFIX + [EXTRA[size]]:
        await sb.exec(cmd, timeout=300)
    return sb


async def _warm(image: str, n: int) -> list[DockerSandbox]:
    return list(await asyncio.gather(*(DockerSandbox.create(SandboxSpec(image=image), run="bench") for _ in range(n))))


def _from(ready: list[DockerSandbox]):
    async def factory(spec: SandboxSpec, task_id: str) -> DockerSandbox:
        return ready.pop()

    return factory


async def _close(sandboxes) -> None:
    await asyncio.gather(*(s.close() for s in sandboxes), return_exceptions=True)


def _ids(*groups) -> list[str]:
    return [s.container.id for group in groups for s in group]


async def one_fork(parent: DockerSandbox, image: str, n: int, warm: bool,
                   cpu: Callable[[list[str]], float]) -> dict[str, float]:
    children: list = []
    try:
        cpu0 = cpu(_ids([parent]))
        ready = await _warm(image, n) if warm else []
        cpu1, t = cpu(_ids([parent], ready)), time.perf_counter()
        children = await parent.fork(n, _from(list(ready)) if warm else None)
        seconds, cpu2 = time.perf_counter() - t, cpu(_ids([parent], children))
        res = await children[-1].exec(CHECK)
        assert res.output.split() == ["5", "/testbed/inflection"], res.output
        return {"s": seconds, "cpu_s": cpu2 - cpu0, "transfer_cpu_s": cpu2 - cpu1}
    finally:
        await _close(children)


async def one_replay(image: str, size: str, n: int, cpu: Callable[[list[str]], float]) -> dict[str, float]:
    ready = await _warm(image, n)
    try:
        cpu0, t = cpu(_ids(ready)), time.perf_counter()

        async def replay(sb: DockerSandbox) -> None:
            for cmd in PREFIX + [EXTRA[size]]:
                await sb.exec(cmd, timeout=300)

        await asyncio.gather(*(replay(sb) for sb in ready))
        return {"s": time.perf_counter() - t, "transfer_cpu_s": cpu(_ids(ready)) - cpu0}
    finally:
        await _close(ready)


async def one_commit(parent: DockerSandbox, n: int, cpu: Callable[[list[str]], float]) -> dict[str, float]:
    api = docker_client().api
    children: list = []
    committed = ""
    try:
        cpu0, t = cpu(_ids([parent])), time.perf_counter()
        committed = (await asyncio.to_thread(api.commit, parent.container.id, repository="envfarm-bench/fork"))["Id"]
        spec = dataclasses.replace(parent.spec, image=committed)
        children = list(await asyncio.gather(*(DockerSandbox.create(spec, run="bench") for _ in range(n))))
        return {"s": time.perf_counter() - t, "cpu_s": cpu(_ids([parent], children)) - cpu0}
    finally:
        await _close(children)
        if committed:
            await asyncio.to_thread(api.remove_image, committed, force=True)


async def bench_fork(image: str, rounds: int, n: int = 8,
                     cpu: Callable[[list[str]], float] = engine_cpu_s) -> dict[str, float]:
    runs: dict[str, list[dict[str, float]]] = {}
    for size in ("small", "100mb"):  # one parent per size, forked `rounds` times each way, interleaved
        parent = await _parent(image, size)
        try:
            for _ in range(rounds):
                runs.setdefault(f"fork_{size}", []).append(await one_fork(parent, image, n, True, cpu))
                runs.setdefault(f"cold_{size}", []).append(await one_fork(parent, image, n, False, cpu))
                runs.setdefault(f"commit_{size}", []).append(await one_commit(parent, n, cpu))
        finally:
            await parent.close()
    # the replay baseline runs the tests 2 x n times: once
    runs["replay_small"] = [await one_replay(image, "small", n, cpu)]

    def med(key: str, field: str) -> float:
        return statistics.median(r[field] for r in runs[key])

    ms = 1000.0
    return {
        f"fork{n}_small_s": med("fork_small", "s"),  # warm children, parent changed ~2.5 MB
        f"fork{n}_100mb_s": med("fork_100mb", "s"),
        f"fork{n}_small_cold_s": med("cold_small", "s"),  # children created inside the fork
        f"fork{n}_100mb_cold_s": med("cold_100mb", "s"),
        # the CPU of a fork, the children's creation included (small changes): this process, the
        # engine and the containers involved (scripts/engine_cpu.py), not the whole shared machine
        "fork_machine_cpu_ms": med("fork_small", "cpu_s") * ms,
        "fork_100mb_machine_cpu_ms": med("fork_100mb", "cpu_s") * ms,
        "fork_transfer_machine_cpu_ms": med("fork_small", "transfer_cpu_s") * ms,  # without the creation
        f"commit{n}_small_s": med("commit_small", "s"),  # docker commit + n children from the image
        f"commit{n}_100mb_s": med("commit_100mb", "s"),
        f"replay{n}_small_s": med("replay_small", "s"),
        # warm sandboxes both ways: the parent's state by replaying its commands vs by forking
        "fork_vs_replay_ratio": med("replay_small", "s") / med("fork_small", "s"),
        "fork_vs_replay_cpu_ratio": med("replay_small", "transfer_cpu_s") / med("fork_small", "transfer_cpu_s"),
        "commit8_100mb_cpu_ms": med("commit_100mb", "cpu_s") * ms,
        "fork_rounds": float(rounds),
    }
