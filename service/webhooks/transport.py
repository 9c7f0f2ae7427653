"""One HTTP POST of a delivery: to an address checked now, within one total deadline.

The name is resolved once, each address judged by the address rule (unless private ones are
allowed), and the connection made to an address so judged: a name pointed at the service's own
network after the check (DNS rebinding) is never reached. Redirects are not followed (the
answer is a failed attempt). The timeout is a deadline for the whole attempt -- connecting,
sending, the status line and headers -- not per read: a receiver trickling its answer byte by
byte is cut off when it passes, by shutting the socket down from a timer.

The standard library's http.client, not httpx or urllib3: neither has a total deadline (both
time each read), and pinning the checked address under them means replacing their connection
classes all the same; here it is one `connect` of a few lines.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from service.webhooks import addresses


@dataclass(frozen=True)
class Answer:
    """How one attempt ended: the status when the receiver answered in time, else why not."""

    status: int | None
    error: str | None
    """None for a 2xx; otherwise what went wrong, in words."""
    timed_out: bool = False
    refused: bool = False
    """The address rule refused the host as it resolves now: nothing was sent."""

    @property
    def ok(self) -> bool:
        return self.error is None


TIMED_OUT = Answer(None, "no answer within the timeout", timed_out=True)


class _Pinned(http.client.HTTPConnection):
    """An HTTP(S) connection to one given address, speaking to the URL's host name (Host
    header, TLS server name and certificate check) as if it had resolved the name itself."""

    def __init__(
        self, host: str, port: int, address: str, timeout: float, tls: ssl.SSLContext | None
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = (
            sock if self.tls is None else self.tls.wrap_socket(sock, server_hostname=self.host)
        )

    def abort(self) -> None:
        """End whatever the connection is waiting for (called from the deadline's timer)."""
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already


def post(
    url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool
) -> Answer:
    """POST the body to the URL; a 2xx status and headers received within `timeout` is success."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or addresses.DEFAULT_PORTS[parts.scheme]
    try:
        found = addresses.resolve(host, port)
    except OSError as error:
        return Answer(None, f"host {host!r} cannot be resolved: {error}")
    private = [a for a in found if not addresses.is_public(a)]
    if private and not allow_private:
        reason = f"host {host!r} resolves to a private address ({private[0]}): not sent"
        return Answer(None, reason, refused=True)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    tls = ssl.create_default_context() if parts.scheme == "https" else None
    deadline = time.monotonic() + timeout
    last = Answer(None, f"host {host!r} has no address")
    for address in found:
        last = _attempt(host, port, address, target, body, headers, deadline, tls)
        if last.status is not None or last.timed_out:
            return last
    return last


def _attempt(
    host: str,
    port: int,
    address: str,
    target: str,
    body: bytes,
    headers: dict[str, str],
    deadline: float,
    tls: ssl.SSLContext | None,
) -> Answer:
    """One connection to one address, cut off at the deadline."""
    left = deadline - time.monotonic()
    if left <= 0:
        return TIMED_OUT
    conn = _Pinned(host, port, address, left, tls)
    timer = threading.Timer(left, conn.abort)
    timer.daemon = True
    timer.start()
    try:
        conn.request("POST", target, body=body, headers={**headers, "connection": "close"})
        status = conn.getresponse().status
        if time.monotonic() >= deadline:
            return TIMED_OUT
    except (OSError, http.client.HTTPException) as error:
        if time.monotonic() >= deadline or isinstance(error, TimeoutError):
            return TIMED_OUT
        return Answer(None, f"{address}: {type(error).__name__}: {error}"[:200])
    finally:
        timer.cancel()
        conn.close()
    return _judged(status)


def _judged(status: int) -> Answer:
    """A received status as success or a failure in words (a redirect is never followed)."""
    if 200 <= status < 300:
        return Answer(status, None)
    if 300 <= status < 400:
        return Answer(status, f"answered {status}: redirects are not followed")
    return Answer(status, f"answered {status}")
