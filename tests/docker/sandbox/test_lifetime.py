"""Sandboxes never outlive their owner: normal exit, SIGKILL, the grace period, the maximum lifetime,
and an agent that tries to end its own sandbox through the same mechanism.

Owners here are child processes (scripts as a user would write them), with a grace period of 1 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import docker.errors
import pytest

from envfarm.errors import SandboxBrokenError, SandboxError
from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox, docker_client

GRACE = {"ENVFARM_SANDBOX_GRACE_S": "1"}

# A script that makes sandboxes of every kind a process holds (a gymnasium env after reset, a bare
# sandbox, a warm pool) and prints their container ids, then waits for its fate.
OWNER = textwrap.dedent("""
    import asyncio, sys, time
    import gymnasium
    import envfarm.env  # registers envfarm/CodingEnv-v0
    from envfarm.farm.admission import AdmissionControl
    from envfarm.farm.pool import WarmPool
    from envfarm.sandbox.backends import default_sandbox_factory
    from envfarm.sandbox.base import SandboxSpec
    from envfarm.sandbox.docker_backend import DockerSandbox
    from envfarm.sandbox.images import build_repo, load_projects

    env = gymnasium.make("envfarm/CodingEnv-v0", tasks="builtin:inflection")
    _, info = env.reset(seed=0)
    ids = [info["sandbox_id"]]
    image = build_repo(load_projects()["inflection"])

    async def more():
        sb = await DockerSandbox.create(SandboxSpec(image=image))
        pool = WarmPool(default_sandbox_factory(), AdmissionControl(2, 50.0), warm_size=2)
        pool.prewarm(image)
        while pool.stats()["warm"] < 2:
            await asyncio.sleep(0.05)
        return [sb.id] + [s.id for q in pool._ready.values() for s in q], (sb, pool)

    loop = asyncio.new_event_loop()
    more_ids, keep = loop.run_until_complete(more())
    print(" ".join(ids + more_ids), flush=True)
    if sys.argv[1] == "wait":
        time.sleep(600)
    # else: the script ends here, closing nothing
""")


def _existing(ids: list[str]) -> list[str]:
    api = docker_client().api
    left = []
    for cid in ids:
        try:
            api.inspect_container(cid)
            left.append(cid)
        except docker.errors.NotFound:
            pass
    return left


def _wait_gone(ids: list[str], within_s: float) -> float:
    started = time.monotonic()
    while _existing(ids):
        if time.monotonic() - started > within_s:
            pytest.fail(f"containers still there after {within_s} s: {_existing(ids)}")
        time.sleep(0.1)
    return time.monotonic() - started


def _owner(mode: str) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([sys.executable, "-c", OWNER, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **GRACE})
    line = proc.stdout.readline()
    if not line.strip():
        proc.kill()
        pytest.fail(f"the owner script failed: {proc.communicate()[1][-3000:]}")
    ids = line.split()
    assert len(ids) == 4 and len(_existing(ids)) == 4
    return proc, ids


def test_a_script_that_exits_without_closing_leaves_no_container(inflection_image):
    proc, ids = _owner("exit")
    assert proc.wait(timeout=120) == 0, proc.communicate()[1][-3000:]
    # the exit hook removed them before the interpreter ended: nothing waited for a grace period
    assert not _existing(ids)


def test_a_sigkilled_owner_leaves_no_container_after_the_grace_period(inflection_image):
    proc, ids = _owner("wait")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    took = _wait_gone(ids, within_s=15)
    print(f"removed {took:.2f} s after the SIGKILL")
    assert took < 10, took  # grace 1 s, then the engine's removal


def test_a_sandbox_in_use_longer_than_the_grace_period_stays_while_its_owner_lives(inflection_image):
    async def main():
        async with await DockerSandbox.create(SandboxSpec(image=inflection_image, orphan_grace_s=1)) as sb:
            for _ in range(3):
                assert (await sb.exec("echo alive")).output.strip() == "alive"
                await asyncio.sleep(1.5)
            assert _existing([sb.container.id])

    asyncio.run(main())


def test_the_agent_cannot_end_its_sandbox_through_the_lease(inflection_image):
    """Killing its own shells, every process it may signal, PID 1's stdin, orphans and signals to
    PID 1: none of it ends the sandbox, past the grace period."""
    attacks = [
        "kill -9 $$",
        "kill -9 -1",
        "echo bye > /proc/1/fd/0; echo bye > /dev/stdin; exec 0<&-; true",
        "cat /proc/1/fd/0 & sleep 0.2; kill -CHLD 1; kill -ALRM 1; kill -HUP 1; kill -9 1; true",
        "for i in $(seq 100); do (sleep 0.0$((RANDOM % 9)) &); done; sleep 1",
        "nohup bash -c 'while :; do pkill -9 -u agent bash; sleep 0.1; done' >/dev/null 2>&1 &",
    ]

    async def main():
        sb = await DockerSandbox.create(SandboxSpec(image=inflection_image, orphan_grace_s=1))
        try:
            for cmd in attacks:
                try:
                    await sb.exec(cmd, timeout=5)
                except SandboxError as exc:  # its own shell killed under it: the agent's doing
                    assert isinstance(exc, SandboxBrokenError), exc
            await asyncio.sleep(3)  # three grace periods
            state = docker_client().api.inspect_container(sb.container.id)["State"]
            assert state["Running"], state
            await sb.exec("pkill -9 -f 'while :' ; true", timeout=5)
            res = await sb.exec("echo still here", timeout=10)
            assert "still here" in res.output, res
        finally:
            await sb.close()

    asyncio.run(main())


def test_maximum_lifetime_removes_the_sandbox_whatever_happens(inflection_image):
    async def main():
        sb = await DockerSandbox.create(SandboxSpec(image=inflection_image, max_lifetime_s=2))
        try:
            assert (await sb.exec("echo ok")).exit_code == 0
            await asyncio.sleep(2.5)
            with pytest.raises(SandboxError) as err:
                await sb.exec("echo late")
            assert not isinstance(err.value, SandboxBrokenError)  # the farm's limit, not the agent's doing
            assert "maximum lifetime" in str(err.value), err.value
            _wait_gone([sb.container.id], within_s=5)
        finally:
            await sb.close()

    asyncio.run(main())


def test_an_episode_that_attacks_the_lease_is_scored_not_masked(fixture_tasks, monkeypatch):
    """Through CodingEnv: the agent kills its shells and writes to PID 1's stdin, then waits past
    the grace period; the episode goes on and ends as the agent's (reward 0), never masked."""
    from envfarm.env import CodingEnv
    from envfarm.policy.base import Completion
    from envfarm.rollout import run_episode

    monkeypatch.setenv("ENVFARM_SANDBOX_GRACE_S", "1")
    commands = ["kill -9 $$", "kill -9 -1", "echo bye > /proc/1/fd/0; exec 0<&-; sleep 3", "echo back"]

    class Attack:
        async def act(self, messages, tools):
            turn = sum(m["role"] == "assistant" for m in messages)
            if turn < len(commands):
                call = {"name": "bash", "arguments": {"command": commands[turn]}}
                return Completion(text=f"<tool_call>{json.dumps(call)}</tool_call>")
            return Completion(text='<tool_call>{"name": "submit", "arguments": {}}</tool_call>')

    env = CodingEnv(max_turns=len(commands) + 2, command_timeout_s=10)
    traj = asyncio.run(run_episode(env, Attack(), fixture_tasks[0]))
    assert traj.reward == 0.0 and not traj.masked, (traj.error_kind, traj.error)
    assert traj.end_reason == "submit" and "back" in traj.turns[3].observation


def test_a_container_its_owner_never_started_is_swept_once_stale(inflection_image, monkeypatch):
    """An owner killed between create and start leaves a container no lease can end: the next
    sandbox creation on the engine removes it once it is older than any live owner would keep it."""
    from envfarm.sandbox import docker_backend
    from envfarm.sandbox.docker_backend import LABEL, LABEL_CREATED

    client = docker_client()
    made = {}
    for name, age in (("stale", 3600), ("fresh", 0)):
        made[name] = client.containers.create(
            inflection_image, command=["true"],
            labels={LABEL: "1", LABEL_CREATED: f"{time.time() - age:.0f}", "envfarm.test": "stillborn"})
    monkeypatch.setattr(docker_backend, "_last_sweep", 0.0)  # this process swept over a minute ago
    sandbox = asyncio.run(DockerSandbox.create(SandboxSpec(image=inflection_image)))
    try:
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(made["stale"].id)
        assert client.containers.get(made["fresh"].id).status == "created"  # a live owner's may be this young
        assert docker_backend.sweep_stillborn() == 0  # nothing else stale; started ones are never its business
        assert sandbox.is_alive()
    finally:
        made["fresh"].remove(force=True)
        asyncio.run(sandbox.close())
