"""Recycled sandboxes: after a verified reset, a used sandbox is indistinguishable from a fresh one
of its image to its next user; what cannot be reset is never handed out (envfarm.sandbox.docker_recycle)."""

from __future__ import annotations

import asyncio

import pytest
from recycling import DIRTY_EPISODE, fingerprint, pristine_sandbox, used_and_recycled

from envfarm.farm.admission import AdmissionControl
from envfarm.farm.pool import WarmPool
from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox, list_containers
from envfarm.sandbox.docker_recycle import NotRecyclable
from envfarm.tasks.setup import prepare_repository

pytestmark = pytest.mark.docker


async def _fresh_print(image: str) -> str:
    async with await DockerSandbox.create(SandboxSpec(image=image), run="test-recycle") as sb:
        return await fingerprint(sb)


def test_a_recycled_sandbox_is_the_fresh_one_to_its_next_user(inflection_image):
    async def main():
        fresh = await _fresh_print(inflection_image)
        sb = await used_and_recycled(SandboxSpec(image=inflection_image))
        try:
            again = await fingerprint(sb)
            await asyncio.sleep(0.5)  # a daemon left running would write again meanwhile
            later = await sb.exec("cat /tmp/daemon 2>&1; python3 -c 'print(1)'; bash -ic true 2>&1; echo $FOO")
            return fresh, again, later.output, sb.uses
        finally:
            await sb.close()

    fresh, recycled, later, uses = asyncio.run(main())
    assert "processes:" in fresh and "/testbed/setup.py" in fresh
    assert recycled == fresh
    assert "No such file" in later and "PLANTED" not in later
    assert uses == 1


def test_recycling_again_and_again_through_a_task_set_up_each_time(inflection_image, fixture_tasks):
    task = fixture_tasks[0]

    async def main():
        fresh = await _fresh_print(task.image)
        heads = []
        async with pristine_sandbox(SandboxSpec(image=task.image)) as sb:
            for _ in range(3):
                heads.append(await prepare_repository(sb, task))
                await sb.exec(DIRTY_EPISODE, timeout=60)
                await sb.recycle()
            return fresh, await fingerprint(sb), heads, sb.uses

    fresh, recycled, heads, uses = asyncio.run(main())
    assert recycled == fresh
    assert heads == [task.base_commit] * 3  # the repository prepares the same each time
    assert uses == 3


def test_a_fork_bomb_left_running_is_killed_or_the_sandbox_is_never_reused(inflection_image):
    bomb = "b() { b | b & }; (b) >/dev/null 2>&1 & sleep 1; true"

    async def main():
        async with pristine_sandbox(SandboxSpec(image=inflection_image)) as sb:
            await sb.exec(bomb, timeout=30)
            try:
                await sb.recycle()
            except NotRecyclable:
                return None
            return await fingerprint(sb)

    after = asyncio.run(main())
    if after is not None:  # reused only when nothing of the bomb is left
        assert after == asyncio.run(_fresh_print(inflection_image))


def test_the_pool_hands_the_same_container_out_again_only_after_its_reset(inflection_image):
    async def create(spec, task_id):
        return await DockerSandbox.create(spec, run="test-recycle-pool", task=task_id)

    async def main():
        pool = WarmPool(create, AdmissionControl(2, 50.0), warm_size=0, recycle=True)
        try:
            first = await pool.acquire(inflection_image, "t1")
            await first.exec("echo left > /tmp/left")
            await pool.release(first)
            await asyncio.gather(*pool._closing)
            second = await pool.acquire(inflection_image, "t2")
            seen = await second.exec("cat /tmp/left 2>&1")
            same = second.container.id == first.container.id
            # a reset that fails closes the sandbox: it is never handed out again
            await second.exec("chmod 000 /testbed")  # still resettable from the host
            second._pristine.entries["dev/not-there"] = (0,)  # ...but its first state cannot be matched
            await pool.release(second)
            await asyncio.gather(*pool._closing)
            third = await pool.acquire(inflection_image, "t3")
            stats = pool.stats()
            await pool.release(third)
            return same, seen.output, third.container.id != second.container.id, stats
        finally:
            await pool.close()

    same, seen, replaced, stats = asyncio.run(main())
    assert same and "No such file" in seen
    assert replaced
    assert stats["recycled"] == 1 and stats["recycle_failures"] == 1 and stats["recycled_hits"] == 1
    assert not list_containers(**{"envfarm.run": "test-recycle-pool"})


def test_an_agent_cannot_reach_the_grading_of_its_own_recycled_sandbox(fixture_tasks):
    """The farm's pool grades in a recycled sandbox, which may be the very container the agent
    worked in. The agent leaves the fix behind outside its diff: a hook that applies it in every
    Python process, a daemon that applies it over and over, the patch file in /tmp. Grading in
    that container after its reset must fail the tests as in a fresh one."""
    from envfarm.env.patch import extract_patch
    from envfarm.farm.pooled import pool_factory
    from envfarm.tasks.grading import grade

    teens = next(t for t in fixture_tasks if t.instance_id == "inflection__ordinal-teens")
    fail_test = teens.FAIL_TO_PASS[0]
    hook = ("import subprocess\nsubprocess.run(['git', '-C', '/testbed', 'apply', '/tmp/.fix.diff'], "
            "capture_output=True)\n")

    async def main():
        pool = WarmPool(lambda spec, task_id: DockerSandbox.create(spec, run="test-recycle-pool", task=task_id),
                        AdmissionControl(2, 50.0), warm_size=0, recycle=True)
        used: list[str] = []
        from_pool = pool_factory(pool)

        async def factory(spec, task_id):
            sb = await from_pool(spec, task_id)
            used.append(sb.container.id)
            return sb

        try:
            sb = await factory(SandboxSpec(image=teens.image), teens.instance_id)
            await prepare_repository(sb, teens)
            await sb.write_file("/tmp/.fix.diff", teens.patch)
            site = (await sb.exec("python3 -m site --user-site")).output.strip()
            await sb.write_file(f"{site}/usercustomize.py", hook)
            await sb.exec("setsid bash -c 'while :; do [ -e /tmp/.hold ] || git -C /testbed apply /tmp/.fix.diff "
                          "2>/dev/null; sleep 0.05; done' >/dev/null 2>&1 < /dev/null &")
            here = await sb.exec(f"python3 -m pytest -q -p no:cacheprovider '{fail_test}'", timeout=120)
            # the diff shows none of it; the daemon goes on once the diff is taken
            await sb.exec("touch /tmp/.hold; sleep 0.3; git checkout -q .; echo '# touched' >> README.rst")
            patch = await extract_patch(sb, teens.base_commit)
            await sb.exec("rm /tmp/.hold")
            await sb.close()  # back to the pool: reset, then handed out again
            await asyncio.gather(*pool._closing)
            result = await grade(teens, patch, factory, timeout=120)
            return here, patch, result, used, pool.stats()
        finally:
            await pool.close()

    here, patch, result, used, stats = asyncio.run(main())
    assert here.exit_code == 0, here.output[-500:]  # the planted fix works in the agent's container
    assert ".fix.diff" not in patch and "ordinal" not in patch
    assert used[0] == used[1] and stats["recycled_hits"] == 1  # graded in the very same container
    assert result.tests_ran and not result.resolved and result.fail_to_pass == 0.0


def test_a_layer_past_the_reset_bounds_is_refused_not_walked(inflection_image):
    """The agent decides how deep its folders go; the reset walks each level from the top, so
    past its bounds it refuses at once (the sandbox is then closed)."""
    deep = "cd /tmp && for i in $(seq 70); do mkdir d && cd d || exit 1; done; touch leaf"

    async def main():
        async with pristine_sandbox(SandboxSpec(image=inflection_image)) as sb:
            assert (await sb.exec(deep)).exit_code == 0
            with pytest.raises(NotRecyclable, match="bounds"):
                await sb.recycle()

    asyncio.run(main())


def test_what_the_kernel_counted_for_the_previous_user_is_not_the_next_users(inflection_image):
    """A previous user that ran into the pids limit (and exited cleanly, so nothing read the
    counters), allocated memory and started many processes: the next user's timeout is a
    timeout, not a pids limit, and neither the memory peak nor the last process number tells
    what the previous user did."""
    busy = ("(for i in $(seq 600); do sleep 30 & done) >/dev/null 2>&1; "
            "python3 -c 'x = bytearray(300 << 20)'; echo started")
    quiet = "true"
    look = "cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes /proc/sys/kernel/ns_last_pid"

    async def one(episode: str):
        async with pristine_sandbox(SandboxSpec(image=inflection_image)) as sb:
            await sb.exec(episode, timeout=60)
            await sb.recycle()
            seen = (await sb.exec(look)).output.split()
            slow = await sb.exec("sleep 5", timeout=1)
            return int(seen[0]), seen[1], slow.limit

    async def main():
        return await one(busy), await one(quiet)

    (peak_busy, last_busy, limit_busy), (_, last_quiet, _) = asyncio.run(main())
    assert limit_busy == "timeout"
    assert peak_busy < 100 << 20
    # the reset's own commands take a few numbers: the previous user's 600 processes do not show
    assert abs(int(last_busy) - int(last_quiet)) <= 5 and int(last_busy) < 400


def test_the_dev_tree_is_as_first_handed_out_and_too_deep_a_dev_shm_is_refused(inflection_image):
    look = "stat -c '%n %Y %X' /dev/null /dev/zero /dev/shm /dev/pts/ptmx; ls -A /dev/shm"
    deep = "python3 -c \"import os; os.chdir('/dev/shm'); [(os.mkdir('d'), os.chdir('d')) for _ in range(1500)]\""

    async def main():
        async with pristine_sandbox(SandboxSpec(image=inflection_image)) as sb:
            first = (await sb.exec(look)).output
            await sb.exec("sleep 1.1; touch /dev/null /dev/zero /dev/pts/ptmx; echo x > /dev/shm/x")
            await sb.recycle()
            after = (await sb.exec(look)).output
            await sb.exec(deep)
            with pytest.raises(NotRecyclable):
                await sb.recycle()
            return first, after

    first, after = asyncio.run(main())
    assert after == first


def test_disk_held_beyond_a_files_size_and_a_grown_folder_are_given_back(inflection_image):
    """fallocate(KEEP_SIZE) on a file the user owns keeps its size, bytes and time (put back)
    but holds disk no size shows; a folder that held many entries stays large on ext4. Both
    carried bits (and disk) to the next user."""
    episode = r"""fallocate -n -l 50M ~/.bashrc && touch -r ~/.profile ~/.bashrc
for i in $(seq 800); do : > "/tmp/$(printf 'x%.0s' $(seq 120))$i"; done; rm -f /tmp/x*
"""
    look = "stat -c '%n %s %b' ~/.bashrc /tmp"

    async def main():
        async with await DockerSandbox.create(SandboxSpec(image=inflection_image), run="test-recycle") as fresh:
            before = (await fresh.exec(look)).output
        async with pristine_sandbox(SandboxSpec(image=inflection_image)) as sb:
            await sb.exec(episode, timeout=120)
            during = (await sb.exec(look)).output
            await sb.recycle()
            return before, during, (await sb.exec(look)).output

    before, during, after = asyncio.run(main())
    assert during != before  # the episode did hold the disk and grow the folder
    assert after == before


def test_a_socket_left_waiting_on_the_loopback_is_never_handed_on(inflection_image):
    """TIME_WAIT keeps a closed connection's chosen addresses in the container's network
    namespace for a minute, readable by the next user: such a sandbox is not recycled."""
    episode = r"""python3 - <<'PY'
import socket
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
for last in range(2, 12):
    c = socket.socket(); c.bind((f"127.0.0.{last}", 0)); c.connect(srv.getsockname())
    s, _ = srv.accept(); s.close(); c.close()
PY
grep -c ':' /proc/net/tcp"""

    async def main():
        async with pristine_sandbox(SandboxSpec(image=inflection_image)) as sb:
            await sb.exec(episode, timeout=60)
            with pytest.raises(NotRecyclable, match="net/"):
                await sb.recycle()

    asyncio.run(main())
