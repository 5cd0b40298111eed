"""The bytes a command becomes on the session's stream (no Docker)."""

from envfarm.sandbox.shell_session import command_bytes


def test_commands_become_utf8_with_raw_bytes_kept_and_lone_surrogates_replaced():
    assert command_bytes("echo héllo") == "echo héllo".encode()
    assert command_bytes("printf '\udcff'") == b"printf '\xff'"  # a raw byte read with surrogateescape
    assert command_bytes("echo x\ud800y") == "echo x\ufffdy".encode()  # JSON's lone "\\ud800": no error
    assert command_bytes("echo a\0b") == b"echo ab"  # NUL ends a message: never inside one
