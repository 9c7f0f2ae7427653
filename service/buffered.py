"""Whole requests before a thread: the WSGI app behind an ASGI face that reads each body first.

granian's WSGI interface hands a request to a Python thread as soon as its headers are in, and
that thread then waits on the socket for the body: a client that announces a Content-Length and
trickles it holds a thread for as long as it likes (measured: `python -m bench.servers`). Here the
body is read on the worker's event loop instead, as an awaited task that costs a socket and a few
bytes, within `body_timeout` seconds and `max_body` bytes; only a complete request reaches one
of the `threads` that run the Flask app. Headers are read by granian itself, within its header
timeout and buffer size (service/server.py).
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from a2wsgi.wsgi import build_environ

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

TIMEOUT_BODY = json.dumps(
    {"error": {"code": "timeout", "message": "the request body did not arrive in time"}}
).encode()
"""The answer to a body that did not arrive within the timeout, in the API's error shape."""


class ClientGone(Exception):
    """The client closed its connection before its body arrived."""


class Answer:
    """What the WSGI app answered: status line, headers and the whole body."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        """The WSGI start_response: keep the status and headers (the body comes back whole)."""
        self.status = int(status.split(" ", 1)[0])
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        return _no_write


def _no_write(_data: bytes) -> None:
    raise RuntimeError("the service's app never uses WSGI's write()")


class BufferedWSGI:
    """An ASGI (HTTP only, no lifespan) app running `app` on `threads` threads (0: on the event
    loop's own thread, one request at a time), each request handed over only once its whole body
    has arrived."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        threads: int,
        max_body: int,
        body_timeout: float,
        inline: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="wsgi") if threads else None
        self.inline = inline
        """Paths run on the loop's own thread even with a pool: short requests that never wait
        on a lock, for which handing over to a thread costs more than the request."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            body = await self._body(scope, receive)
        except ClientGone:
            return  # nobody to answer
        if body is None:
            headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
            await _send(send, 408, headers, TIMEOUT_BODY)
            return
        environ = cast(dict[str, Any], build_environ(scope, io.BytesIO(body)))  # type: ignore[arg-type]
        if "CONTENT_LENGTH" not in environ or len(body) > self.max_body:
            # a chunked body, now whole: its length; one over the limit: the app answers 413
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        answer = Answer()
        if self.pool is None or scope["path"] in self.inline:
            content = self._run(environ, answer)  # on the loop's thread: one request at a time
        else:
            loop = asyncio.get_running_loop()
            content = await loop.run_in_executor(self.pool, self._run, environ, answer)
        await _send(send, answer.status, answer.headers, content)

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body (or its first max_body + 1 bytes: enough for the app to refuse it);
        None when it did not arrive within body_timeout; ClientGone if the client left."""
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            return b""  # refused unread: the app sees the declared length and answers 413
        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientGone
                    chunk = message.get("body", b"")
                    parts.append(chunk)
                    size += len(chunk)
                    if not message.get("more_body") or size > self.max_body:
                        return b"".join(parts)
        except TimeoutError:
            return None

    def _run(self, environ: dict[str, Any], answer: Answer) -> bytes:
        """Call the WSGI app in a pool thread and collect its whole answer."""
        environ["wsgi.errors"] = sys.stderr
        result = self.app(environ, answer.start_response)
        try:
            return b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


def _content_length(scope: Scope) -> int | None:
    """The request's Content-Length, if it declared a valid one."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
