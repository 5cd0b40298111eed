"""A hijacked exec stream keeps the frames that arrived with the engine's response headers."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import docker

from envfarm.sandbox.docker_backend import hijacked_stream
from envfarm.sandbox.shell_session import STREAM_HEADER

HEADERS = (b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
           b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")


def frame(kind: int, data: bytes) -> bytes:
    return STREAM_HEADER.pack(kind, len(data)) + data


def engine_answering_in_one_write(path: Path, payload: bytes) -> threading.Thread:
    """A stand-in engine on a unix socket: the 101 and the command's first frames in one write,
    as a loaded engine's answer reaches a client that reads late."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        head, _, body = request.partition(b"\r\n\r\n")
        length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), b"0"))
        while len(body) < length:
            body += conn.recv(4096)
        conn.sendall(HEADERS + payload)
        conn.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def read_all(raw: socket.socket) -> bytes:
    raw.setblocking(True)
    data = b""
    while chunk := raw.recv(65536):
        data += chunk
    return data


def test_frames_sent_with_the_headers_are_not_lost(tmp_path: Path):
    payload = frame(1, b"\nNONCE\n") + frame(2, b"\nNONCE\n") + frame(1, b"the rest")
    sock_path = tmp_path / "engine.sock"
    thread = engine_answering_in_one_write(sock_path, payload)
    api = docker.APIClient(base_url=f"unix://{sock_path}", version="1.41")
    raw, early, _ = hijacked_stream(api.exec_start("abc", socket=True))
    assert early + read_all(raw) == payload
    thread.join(5)


def test_the_sdk_socket_alone_loses_them(tmp_path: Path):
    """Why hijacked_stream exists: the SDK's socket skips what its HTTP reader buffered."""
    payload = frame(1, b"first")
    sock_path = tmp_path / "engine.sock"
    thread = engine_answering_in_one_write(sock_path, payload)
    api = docker.APIClient(base_url=f"unix://{sock_path}", version="1.41")
    sock = api.exec_start("abc", socket=True)
    assert read_all(getattr(sock, "_sock", sock)) != payload
    thread.join(5)
