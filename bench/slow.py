"""Slow clients held open against a server, and normal clients timed beside them.

A slow-header socket sends a request line and a Host header, then one more byte of headers every
`every` seconds and never ends them. A slow-body socket sends complete headers announcing a body
of BODY_BYTES (with a valid API key, so that the app would read it) and then one byte of it every
`every` seconds. One thread trickles into every socket; a socket the server closes (or answers:
a 408, a 400) is counted as closed by the server and replaced by a new one at once, as an
attacker's script would, so the server faces `count` slow sockets of each kind for the whole run.
`held()` checks that every socket is still open at the moment it is called.
"""

from __future__ import annotations

import http.client
import json
import selectors
import socket
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bench.server import HOST, api_headers

BODY_BYTES = 100_000
"""The body a slow-body socket announces: below the service's 256 KiB limit, so it is not
refused unread."""
HEADER_DRIP = b"X-Slow: 1\r\n"
"""What a slow-header socket sends, a byte at a time, over and over."""
CONNECT_TIMEOUT = 10.0


@dataclass
class Slow:
    """One slow socket: its kind, the socket and how many bytes of its drip it has sent."""

    kind: str
    sock: socket.socket
    sent: int = 0


@dataclass
class SlowCounts:
    """What the slow sockets saw: opened (replacements included), closed by the server, refused
    at connect."""

    opened: dict[str, int] = field(default_factory=lambda: {"headers": 0, "body": 0})
    closed: dict[str, int] = field(default_factory=lambda: {"headers": 0, "body": 0})
    refused: int = 0


class SlowClients:
    """`headers` slow-header and `bodies` slow-body sockets against host:port, kept at those
    counts by a thread until stopped."""

    def __init__(self, port: int, key: str, headers: int, bodies: int, every: float = 1.0) -> None:
        self.port = port
        self.key = key
        self.wanted = {"headers": headers, "body": bodies}
        self.every = every
        self.counts = SlowCounts()
        self.sockets: list[Slow] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        """Open every socket (in this thread, so they are all open on return), then trickle."""
        for kind, count in self.wanted.items():
            for _ in range(count):
                self._open(kind)
        self.thread.start()

    def close(self) -> None:
        """Stop trickling and close every socket."""
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        for slow in self.sockets:
            slow.sock.close()
        self.sockets.clear()

    def held(self) -> dict[str, int]:
        """How many sockets of each kind are open right now (the server has closed none of them
        since the last trickle: a closed one is readable at EOF, or refuses a byte)."""
        with self.lock:
            self._reap()
            found = {"headers": 0, "body": 0}
            for slow in self.sockets:
                found[slow.kind] += 1
            return found

    def _open(self, kind: str) -> None:
        try:
            sock = socket.create_connection((HOST, self.port), timeout=CONNECT_TIMEOUT)
            sock.sendall(self._head(kind))
        except OSError:
            self.counts.refused += 1
            return
        sock.setblocking(False)
        self.sockets.append(Slow(kind, sock))
        self.counts.opened[kind] += 1

    def _head(self, kind: str) -> bytes:
        if kind == "headers":
            return f"POST /authorize HTTP/1.1\r\nHost: {HOST}\r\n".encode()
        lines = [
            "POST /authorize HTTP/1.1",
            f"Host: {HOST}",
            *(f"{k}: {v}" for k, v in api_headers(self.key).items()),
            f"Content-Length: {BODY_BYTES}",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            with self.lock:
                self._reap()
                for slow in self.sockets:
                    drip = HEADER_DRIP if slow.kind == "headers" else b"{"
                    try:
                        slow.sock.send(drip[slow.sent % len(drip) : slow.sent % len(drip) + 1])
                        slow.sent += 1
                    except OSError:
                        pass  # reaped, and replaced, on the next round
                missing = {k: n for k, n in self.wanted.items()}
                for slow in self.sockets:
                    missing[slow.kind] -= 1
                for kind, count in missing.items():
                    for _ in range(count):
                        self._open(kind)

    def _reap(self) -> None:
        """Drop (and count) every socket the server closed or answered."""
        if not self.sockets:
            return
        with selectors.DefaultSelector() as selector:
            for slow in self.sockets:
                selector.register(slow.sock, selectors.EVENT_READ, slow)
            ready = {id(key.data) for key, _ in selector.select(0)}
        kept = []
        for slow in self.sockets:
            if id(slow) in ready or _broken(slow.sock):
                self.counts.closed[slow.kind] += 1
                slow.sock.close()
            else:
                kept.append(slow)
        self.sockets = kept


def _broken(sock: socket.socket) -> bool:
    """Whether the socket has a pending error (a reset by the server)."""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0


@contextmanager
def slow_clients(
    port: int, key: str, headers: int, bodies: int, every: float = 1.0
) -> Iterator[SlowClients]:
    """Slow clients held open for the block, always closed afterwards."""
    clients = SlowClients(port, key, headers, bodies, every)
    try:
        clients.start()
        yield clients
    finally:
        clients.close()


@dataclass(frozen=True)
class Probe:
    """What normal clients got: one latency per answered request (seconds), and failures."""

    latencies: tuple[float, ...]
    failures: int

    @property
    def sent(self) -> int:
        return len(self.latencies) + self.failures

    @property
    def success(self) -> float:
        """Share of requests answered 200 within the timeout."""
        return len(self.latencies) / self.sent if self.sent else 0.0

    def quantile(self, q: float) -> float:
        """The q-quantile of the answered requests' latencies in seconds (inf: none answered)."""
        if not self.latencies:
            return float("inf")
        if len(self.latencies) == 1:
            return self.latencies[0]
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return cuts[min(98, max(0, round(q * 100) - 1))]


def probe(
    port: int,
    requests: Sequence[tuple[str, str, bytes | None, dict[str, str]]],
    clients: int,
    timeout: float,
) -> Probe:
    """Send `requests` (method, path, body, headers) from `clients` threads, each on a
    connection per request; the latency of every 200 and the count of everything else."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    queue = list(enumerate(requests))

    def client() -> None:
        while True:
            with lock:
                if not queue:
                    return
                _, (method, path, body, headers) = queue.pop()
            started = time.perf_counter()
            ok = _one(port, method, path, body, headers, timeout)
            elapsed = time.perf_counter() - started
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    failures[0] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Probe(tuple(latencies), failures[0])


def _one(
    port: int, method: str, path: str, body: bytes | None, headers: dict[str, str], timeout: float
) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def authorize_requests(
    key: str, question: dict[str, Any], count: int
) -> list[tuple[str, str, bytes | None, dict[str, str]]]:
    """`count` POST /authorize requests asking `question` with `key`."""
    body = json.dumps(question).encode()
    return [("POST", "/authorize", body, api_headers(key))] * count
