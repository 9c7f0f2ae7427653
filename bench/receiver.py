"""A real webhook receiver on loopback for the delivery tests and bench.webhooks: a threaded
http.server that records every request (path, headers, body, when it began and ended) and
answers as a plan says -- a status, after a delay, or its status line trickled byte by byte.

It also counts overlaps: a request arriving for a path while another request for the same path
is still waiting for its answer to begin (two deliveries in flight to one endpoint at once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.server import HOST

POLL_INTERVAL = 0.01


@dataclass(frozen=True)
class Plan:
    """How to answer one request: the status, after `delay` seconds (sooner once `hold` is set,
    when given); when `trickle`, the status line and headers are written one byte every
    `trickle` seconds."""

    status: int = 200
    delay: float = 0.0
    trickle: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()
    hold: threading.Event | None = None


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    """Lower-case names."""
    body: bytes
    began: float
    """time.monotonic() when it arrived."""
    wall: float
    """time.time() then (to compare with the store's timestamps)."""
    answered: int


Answering = Callable[[str, int], Plan]
"""The plan for a request: given its path and how many requests that path had before it."""


def always_ok(_path: str, _before: int) -> Plan:
    return Plan()


@dataclass
class Receiver:
    """The server and what it saw; `answer` may be replaced while it runs."""

    answer: Answering = always_ok
    port: int = 0
    received: list[Received] = field(default_factory=list)
    overlaps: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)
    _in_flight: dict[str, int] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://{HOST}:{self.port}{path}"

    def start(self) -> None:
        """Listen (on `port`, or a free one) and serve in a thread of its own."""
        self.closing.clear()
        server = ThreadingHTTPServer((HOST, self.port), _handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        """Stop listening; requests being answered are cut short."""
        self.closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def at(self, path: str = "/hook") -> list[Received]:
        """The requests to one path, in arrival order."""
        with self.lock:
            return [r for r in self.received if r.path == path]

    def ids(self, path: str = "/hook") -> list[str]:
        """The webhook-id of each request to the path, in arrival order."""
        return [r.headers["webhook-id"] for r in self.at(path)]

    def arrive(self, path: str) -> int:
        """Note a request's start; how many that path had before it."""
        with self.lock:
            before = self._counts.get(path, 0)
            self._counts[path] = before + 1
            if self._in_flight.get(path, 0):
                self.overlaps += 1
            self._in_flight[path] = self._in_flight.get(path, 0) + 1
            return before

    def record(self, seen: Received) -> None:
        with self.lock:
            self.received.append(seen)

    def leave(self, path: str) -> None:
        with self.lock:
            self._in_flight[path] -= 1


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            began, wall = time.monotonic(), time.time()
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            before = receiver.arrive(self.path)
            plan = receiver.answer(self.path, before)
            headers = {k.lower(): v for k, v in self.headers.items()}
            receiver.record(Received(self.path, headers, body, began, wall, plan.status))
            try:
                (plan.hold or receiver.closing).wait(plan.delay)
            finally:
                # Out of flight once it starts answering: the sender may go on as soon as it
                # has read the answer, before this thread gets to run again.
                receiver.leave(self.path)
            try:
                self._answer(plan)
            except OSError:
                pass  # the sender gave up (its deadline) or the receiver is stopping

        def _answer(self, plan: Plan) -> None:
            head = f"HTTP/1.1 {plan.status} Planned\r\ncontent-length: 0\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in plan.headers) + "\r\n"
            if not plan.trickle:
                self.wfile.write(head.encode())
                return
            for byte in head.encode():
                if receiver.closing.wait(plan.trickle):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet: the tests read what was received, not a log."""

    return Handler


@contextmanager
def receiving(answer: Answering = always_ok, port: int = 0) -> Iterator[Receiver]:
    """A receiver listening until the block ends."""
    receiver = Receiver(answer, port)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; AssertionError naming `what` when time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_INTERVAL)
