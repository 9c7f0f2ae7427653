"""service/buffered.py and the limits `serve` gives granian, through a real `workflow-authz serve`
and raw sockets: a body that does not arrive in time is a 408 in the API's error shape, headers
that do not arrive in time or are too large close the connection unanswered by the app, a body
announced over the limit is the app's own 413, and a chunked body is read whole."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from bench.server import HOST, Server, api_headers, create_api_key, serving
from service.config import PREFIX

WAIT = 30.0
QUESTION = json.dumps(
    {"role": "parent", "action": "view", "area": "behaviour", "phase": "completed"}
).encode()
LIMITS = {f"{PREFIX}HEADER_TIMEOUT": "1", f"{PREFIX}BODY_TIMEOUT": "1"}


@pytest.fixture
def served(sqlite_url: str) -> Iterator[tuple[Server, str]]:
    key = create_api_key(sqlite_url, "default")
    with serving(sqlite_url, workers=1, env=LIMITS) as server:
        yield server, key


def _connect(server: Server) -> socket.socket:
    return socket.create_connection((HOST, server.port), timeout=WAIT)


def _head(key: str, extra: dict[str, str]) -> bytes:
    lines = ["POST /authorize HTTP/1.1", f"Host: {HOST}"]
    lines += [f"{k}: {v}" for k, v in {**api_headers(key), **extra}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout, WAIT,
    is the deadline)."""
    received = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk


def _answer(sock: socket.socket) -> bytes:
    """One whole HTTP answer (head and a Content-Length body), or what came before a close."""
    received = b""
    while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < _length(received):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def _length(received: bytes) -> int:
    head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_a_body_that_stops_arriving_is_answered_408_after_the_body_timeout(
    served: tuple[Server, str],
) -> None:
    server, key = served
    with _connect(server) as sock:
        sock.sendall(_head(key, {"Content-Length": str(len(QUESTION))}) + QUESTION[:5])
        started = time.monotonic()
        answer = _answer(sock)
        waited = time.monotonic() - started
    assert _status(answer) == 408, answer
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "timeout"
    assert waited < WAIT  # answered by the server's timeout, not by ours


def test_headers_that_stop_arriving_close_the_connection_after_the_header_timeout(
    served: tuple[Server, str],
) -> None:
    server, _ = served
    with _connect(server) as sock:
        sock.sendall(f"POST /authorize HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode())
        answer = _until_closed(sock)
    assert _status(answer) in (0, 408), answer  # closed, or told why; never the app's answer


def test_headers_over_the_limit_are_refused_before_the_app(served: tuple[Server, str]) -> None:
    server, key = served
    big = {"X-Big": "a" * 20_000}  # over MAX_HEADER_BYTES (16384)
    with _connect(server) as sock:
        sock.sendall(_head(key, {**big, "Content-Length": str(len(QUESTION))}) + QUESTION)
        answer = _until_closed(sock)
    assert _status(answer) in (0, 400, 431), answer
    reply = server.post_json("/authorize", json.loads(QUESTION), key)
    assert reply.status == 200  # and the server is fine


def test_a_body_announced_over_the_limit_is_the_apps_own_413_unread(
    served: tuple[Server, str],
) -> None:
    server, key = served
    with _connect(server) as sock:
        sock.sendall(_head(key, {"Content-Length": str(10 * 1024 * 1024)}) + b"{")
        answer = _answer(sock)
    assert _status(answer) == 413, answer
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "too_large"


def test_a_chunked_body_is_read_whole_and_answered(served: tuple[Server, str]) -> None:
    server, key = served
    half = len(QUESTION) // 2
    chunks = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n"
        for part in (QUESTION[:half], QUESTION[half:])
    )
    with _connect(server) as sock:
        sock.sendall(_head(key, {"Transfer-Encoding": "chunked"}) + chunks + b"0\r\n\r\n")
        answer = _answer(sock)
    assert _status(answer) == 200, answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["allowed"] is True
