"""The Docker sandbox: persistent shell, timeouts, output caps, files, isolation basics, cleanup."""

from __future__ import annotations

import asyncio

import pytest

from envfarm.sandbox.base import ImageMissingError, SandboxError, SandboxSpec
from envfarm.sandbox.docker_backend import LABEL, DockerSandbox, docker_client

pytestmark = pytest.mark.docker


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def sandbox_run(inflection_image):
    """Runs an async test body with a fresh sandbox that is always closed."""

    def runner(body):
        async def main():
            sb = await DockerSandbox.create(SandboxSpec(image=inflection_image), run="tests")
            try:
                return await body(sb)
            finally:
                await sb.close()

        return run(main())

    return runner


def test_state_persists_between_commands(sandbox_run):
    async def body(sb):
        await sb.exec("cd /tmp && export GREETING=hello && mkdir -p work")
        res = await sb.exec("pwd; echo $GREETING")
        assert res.output.split() == ["/tmp", "hello"]
        assert res.exit_code == 0

    sandbox_run(body)


def test_exit_codes_and_stderr(sandbox_run):
    async def body(sb):
        res = await sb.exec("echo out; echo err >&2; exit_code_is() { return 7; }; exit_code_is")
        assert res.exit_code == 7
        assert "out" in res.output and "err" in res.output

    sandbox_run(body)


def test_timeout_kills_command_and_session_survives(sandbox_run):
    async def body(sb):
        await sb.exec("cd /tmp && export KEEP=1")
        res = await sb.exec("sleep 30 & sleep 60", timeout=1)
        assert res.timed_out and "timed out" in res.note
        assert res.seconds < 10
        after = await sb.exec("echo alive; pwd; echo $KEEP; ps -eo comm 2>/dev/null | grep -c sleep || "
                              "grep -l sleep /proc/[0-9]*/comm 2>/dev/null | wc -l")
        lines = after.output.split()
        assert lines[:3] == ["alive", "/tmp", "1"]
        assert after.exit_code == 0
        # the background sleep of the timed-out command was killed too (only PID 1's sleep remains)
        assert int(lines[3]) <= 1

    sandbox_run(body)


def test_busy_shell_is_replaced_in_the_same_directory(sandbox_run):
    async def body(sb):
        await sb.exec("cd /tmp")
        res = await sb.exec("while :; do :; done", timeout=1)
        assert res.timed_out and "new shell session" in res.note
        assert (await sb.exec("pwd")).output.strip() == "/tmp"

    sandbox_run(body)


def test_shell_exit_starts_a_new_session(sandbox_run):
    async def body(sb):
        res = await sb.exec("exit 3")
        assert res.exit_code == 3 and "new shell session" in res.note
        assert (await sb.exec("echo ok")).output == "ok\n"

    sandbox_run(body)


def test_ten_megabytes_of_output_are_capped(sandbox_run):
    async def body(sb):
        res = await sb.exec("head -c 10000000 /dev/zero | tr '\\0' x; echo; echo END", timeout=60,
                            output_limit=10_000)
        assert res.truncated and res.exit_code == 0
        assert "bytes of output cut" in res.output
        assert res.output.rstrip().endswith("END")
        assert len(res.output) < 20_000
        assert (await sb.exec("echo next")).output == "next\n"

    sandbox_run(body)


def test_binary_and_non_utf8_output_survive(sandbox_run):
    async def body(sb):
        res = await sb.exec("printf 'caf\\xc3\\xa9 \\xff\\xfe\\x00 end'")
        assert res.output.startswith("café ") and res.output.endswith(" end")
        assert "\ufffd" in res.output
        res = await sb.exec("echo 'non-ascii command: ünïcödé'")
        assert res.output == "non-ascii command: ünïcödé\n"

    sandbox_run(body)


def test_commands_never_read_the_session_stream_and_host_data_arrives_exact(sandbox_run):
    """An agent's command gets end-of-file on stdin at once (the stream carries the protocol); the
    host's own data messages (a fork's inbox) reach their command byte for byte, NULs included,
    and the session goes on in step. A NUL in a command is dropped, never a message boundary."""
    import hashlib

    data = bytes(range(256)) * 4096 + b"\0tail"

    async def body(sb):
        res = await sb.exec("cat; echo after-cat", timeout=10)
        assert res.output == "after-cat\n" and not res.timed_out
        got = await sb._session.exec_with_data(f"head -c {len(data)} | sha256sum", data, 60, 4096)
        assert got.exit_code == 0 and got.output.split()[0] == hashlib.sha256(data).hexdigest()
        res = await sb.exec("echo a\0echo b; echo c")
        assert res.output == "aecho b\nc\n" and res.exit_code == 0
        assert (await sb.exec("echo still in step")).output == "still in step\n"

    sandbox_run(body)


def test_files_in_and_out_without_argv(sandbox_run):
    async def body(sb):
        payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
        await sb.write_file("/testbed/sub/dir/blob.bin", payload)
        assert await sb.read_file("sub/dir/blob.bin") == payload
        text = "it's \"quoted\" $HOME `x`\n"
        await sb.write_file("/tmp/t.txt", text)
        assert (await sb.exec("cat /tmp/t.txt")).output == text
        with pytest.raises(FileNotFoundError):
            await sb.read_file("/nope")

    sandbox_run(body)


def test_small_and_large_files_through_the_session_never_as_root(sandbox_run):
    """One chunk or many, write_file gives the same bytes, mode and owner; a path the sandbox's
    user may not write is refused (no write as root through the archive API)."""
    from envfarm.sandbox.docker_backend import SESSION_WRITE_MAX

    async def body(sb):
        small, large = bytes(range(256)) * 16, bytes(range(256)) * (SESSION_WRITE_MAX // 256 + 1)
        await sb.write_file("a/small.bin", small, mode=0o755)
        await sb.write_file("a/large.bin", large, mode=0o755)
        with pytest.raises(PermissionError):
            await sb.write_file("/etc/envfarm-probe.txt", "root-owned directory\n")
        listing = await sb.exec("stat -c '%a %u %s' a/small.bin a/large.bin /etc/envfarm-probe.txt")
        lines = listing.output.split("\n")
        assert f"755 1000 {len(small)}" in lines and f"755 1000 {len(large)}" in lines
        assert "No such file" in listing.output
        assert await sb.read_file("a/small.bin") == small and await sb.read_file("a/large.bin") == large
        assert (await sb.exec("touch /etc/x")).exit_code != 0  # the user really may not write there
        # a shell the agent changed (noclobber, functions shadowing the tools) still gets the bytes
        await sb.exec("set -o noclobber; base64() { echo sabotage; }; chmod() { return 1; }")
        await sb.write_file("a/small.bin", small[::-1], mode=0o600)
        assert await sb.read_file("a/small.bin") == small[::-1]
        assert (await sb.exec("stat -c %a a/small.bin")).output.strip() == "600"

    sandbox_run(body)


def test_container_is_locked_down(sandbox_run):
    async def body(sb):
        attrs = docker_client().api.inspect_container(sb.container.id)
        host = attrs["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["PidsLimit"] > 0 and host["Memory"] > 0 and host["NanoCpus"] > 0
        assert attrs["Config"]["Labels"][LABEL] == "1"
        res = await sb.exec("id -u; cat /proc/self/status | grep CapEff")
        uid, cap = res.output.splitlines()
        assert uid == "1000" and cap.split()[-1] == "0000000000000000"

    sandbox_run(body)


def test_close_removes_the_container_even_after_errors(inflection_image):
    async def main():
        sb = await DockerSandbox.create(SandboxSpec(image=inflection_image), run="tests")
        cid = sb.container.id
        try:
            docker_client().api.kill(cid)  # the container dies under the sandbox
            with pytest.raises(SandboxError):
                await sb.exec("echo hi", timeout=5)
        finally:
            await sb.close()
            await sb.close()  # idempotent
        return cid

    cid = run(main())
    assert not docker_client().containers.list(all=True, filters={"id": cid})


def test_missing_image_names_it_and_says_how_to_get_it(docker_engine):
    with pytest.raises(ImageMissingError) as err:
        run(DockerSandbox.create(SandboxSpec(image="envfarm/no-such-image:1")))
    assert "envfarm/no-such-image:1" in str(err.value) and "docker load" in str(err.value)
