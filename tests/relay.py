"""A TCP relay between one server process and PostgreSQL that a test can cut and restore.

Two ways to cut the link:
  reset      every relayed connection is closed and new ones are refused (reset as soon as
             accepted): a database restart or a firewall that rejects, seen at once;
  blackhole  nothing is forwarded any more, in either direction, but every socket stays open and
             new connections are accepted and held: a network partition, or a proxy that stalled.
             The peers' kernels still acknowledge what they send (the relay's kernel does), so
             only a client-side deadline notices; TCP timeouts and keepalives never fire.
`restore` opens the link again; after a blackhole, what was held is delivered then, in order, as
after a partition heals (a client that gave up meanwhile has closed its side).

`cut_at_reply_to(marker, kind)` cuts at a boundary the test chooses: once a client has sent a
chunk holding `marker` (b"COMMIT"), the server's reply to it is the first thing not forwarded --
the server has acted, its answer is lost.

A relay in this process rather than a network namespace: it needs no root, runs wherever the
tests run, and cuts exactly when the test says so (each call returns once the cut is in force:
nothing is forwarded after `blackhole()` returns but a chunk already being written, and every
socket is closed when `reset()` returns).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

CHUNK = 65536
OPEN, RESET, BLACKHOLE = "open", "reset", "blackhole"


class _Link:
    """One relayed connection: whether its server's next chunk answers the trap's marker."""

    def __init__(self) -> None:
        self.answering_marker = False


class Relay:
    """Listens on a free loopback port and relays each connection to `upstream`."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.state = OPEN
        self.flowing = threading.Event()
        self.flowing.set()
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.threads: list[threading.Thread] = []
        self.accepted = 0
        self.closed = False
        self.trap: tuple[bytes, str] | None = None
        self.tripped = threading.Event()
        self._start(self._accept_loop)

    def cut_at_reply_to(self, marker: bytes, kind: str) -> None:
        """Cut (`kind`: reset or blackhole) when a server replies to a chunk holding `marker`,
        before that reply is forwarded; `tripped` is set as the cut is made."""
        with self.lock:
            self.trap = (marker, kind)
            self.tripped.clear()

    def reset(self) -> None:
        """Close every relayed connection and refuse new ones until `restore`."""
        with self.lock:
            self.state = RESET
            doomed, self.sockets = self.sockets, set()
        for sock in doomed:
            _abort(sock)
        self.flowing.set()  # pumps held by an earlier blackhole wake up and find their end closed

    def blackhole(self) -> None:
        """Stop forwarding bytes; keep every socket open and accept (and hold) new ones."""
        with self.lock:
            self.state = BLACKHOLE
            self.flowing.clear()

    def restore(self) -> None:
        """Forward again: held bytes first, then whatever comes; accept new connections."""
        with self.lock:
            self.state = OPEN
            self.flowing.set()

    def close(self) -> None:
        """Stop listening, close every connection and wait for the relay's threads."""
        with self.lock:
            self.closed = True
            doomed, self.sockets = self.sockets, set()
        _close(self.listener)  # the shutdown wakes the accept loop; a close alone would not
        for sock in doomed:
            _abort(sock)
        self.flowing.set()
        for thread in self.threads:
            thread.join(10)

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self.lock:
                refused = self.state == RESET or self.closed
                self.accepted += 1
            if refused:
                _abort(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                _abort(client)
                continue
            server.settimeout(None)
            with self.lock:
                if self.state == RESET or self.closed:  # cut while we were connecting
                    _abort(client)
                    _abort(server)
                    continue
                self.sockets |= {client, server}
            link = _Link()
            self._start(self._pump, client, server, link, False)
            self._start(self._pump, server, client, link, True)

    def _pump(
        self, source: socket.socket, sink: socket.socket, link: _Link, from_server: bool
    ) -> None:
        """Copy source to sink, each chunk only while the link flows; on an end, close both."""
        while True:
            try:
                data = source.recv(CHUNK)
            except OSError:
                data = b""
            self._spring(link, data, from_server)
            self.flowing.wait()
            if not data:
                break
            try:
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            with self.lock:
                self.sockets.discard(sock)
            _close(sock)

    def _spring(self, link: _Link, data: bytes, from_server: bool) -> None:
        """The trap: mark a client chunk holding the marker (before it is forwarded, so the
        reply cannot overtake the mark); cut on the server's next chunk on that link."""
        with self.lock:
            trap = self.trap
            if trap is None:
                return
            if not from_server:
                link.answering_marker = link.answering_marker or trap[0] in data
                return
            if not link.answering_marker:
                return
            self.trap = None
        self.tripped.set()  # first: the cut's effects must not be seen before the trap is
        getattr(self, trap[1])()


def _close(sock: socket.socket) -> None:
    """End a connection the ordinary way (FIN), waking the pump that reads from it."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _abort(sock: socket.socket) -> None:
    """End a connection with a reset: the peer sees it broken, not closed after a last word.
    SHUT_RD wakes a pump blocked reading it without sending anything; the close sends the RST."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    sock.close()


@contextmanager
def relaying(upstream: tuple[str, int]) -> Iterator[Relay]:
    """A relay to `upstream`, closed on exit."""
    relay = Relay(upstream)
    try:
        yield relay
    finally:
        relay.close()
