"""Every candidate server of `bench.servers`, each serving the floor or the product app.

    python -m bench.launch SERVER APP --host 127.0.0.1 --port 8081 --workers 2

SERVER is one of CANDIDATES; APP is `floor` (bench/floor.py's constant JSON) or `product` (the
service's app). Each runs `workers` processes, each building its app after the fork, with the
same metrics folder and hash slots as `workflow-authz serve` (service/server.py's
`serving_state`). The command takes --host/--port/--workers last, as bench/server.py's
`serving` appends them.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from flask import Flask

from bench import internals

APPS = ("floor", "product")
GTHREAD_THREADS = 4
"""gunicorn gthread's threads per worker (its default is 1, which is sync with extra steps)."""
WAITRESS_THREADS = 4
"""waitress's own default threads per process."""
A2WSGI_THREADS = 4
"""a2wsgi's thread pool per process (its default is 10)."""


def floor_app() -> Flask:
    """bench/floor.py's app: the service's own app plus one constant-JSON route."""
    from bench.floor import create_floor_app

    return create_floor_app()


def product_app() -> Flask:
    """The service's app, as `workflow-authz serve` builds it in each worker."""
    return internals.create_app()


LOADERS: dict[str, Callable[[], Flask]] = {"floor": floor_app, "product": product_app}


def floor_a2wsgi() -> Any:
    """The floor app behind a2wsgi (for uvicorn)."""
    from a2wsgi import WSGIMiddleware

    return WSGIMiddleware(floor_app(), workers=A2WSGI_THREADS)  # type: ignore[arg-type]


def product_a2wsgi() -> Any:
    """The product behind a2wsgi (for uvicorn)."""
    from a2wsgi import WSGIMiddleware

    return WSGIMiddleware(product_app(), workers=A2WSGI_THREADS)  # type: ignore[arg-type]


def gunicorn(worker_class: str) -> Callable[[str, str, int, int], None]:
    """gunicorn with this worker class (sync: today's `serve`; gthread: threads per worker)."""

    def run(app: str, host: str, port: int, workers: int) -> None:
        extra = {"threads": GTHREAD_THREADS} if worker_class == "gthread" else {}
        internals.serve_gunicorn(LOADERS[app], host, port, workers, worker_class, extra)

    return run


def granian_wsgi(app: str, host: str, port: int, workers: int) -> None:
    """granian's WSGI interface with its defaults (blocking threads: backpressure / 2)."""
    from granian.constants import Interfaces
    from granian.server import Server

    with internals.serving_state():
        Server(
            f"bench.launch:{app}_app",
            address=host,
            port=port,
            workers=workers,
            interface=Interfaces.WSGI,
            factory=True,
            respawn_failed_workers=True,
        ).serve()


def floor_buffered() -> Any:
    """The floor app behind the service's buffering adapter (for granian's ASGI interface)."""
    return internals.buffered(floor_app)


def product_buffered() -> Any:
    """The product exactly as each `workflow-authz serve` worker builds it."""
    return internals.buffered(product_app)


def granian_buffered(app: str, host: str, port: int, workers: int) -> None:
    """granian (ASGI) over the service's buffering adapter: what `workflow-authz serve` runs."""
    internals.serve_granian(f"bench.launch:{app}_buffered", host, port, workers)


def granian_inline(app: str, host: str, port: int, workers: int) -> None:
    """The same with WORKFLOW_AUTHZ_THREADS=0: each request runs on the worker's event loop
    thread (no hop to a pool thread; one request at a time per worker, like a sync worker)."""
    os.environ["WORKFLOW_AUTHZ_THREADS"] = "0"
    granian_buffered(app, host, port, workers)


def uvicorn_a2wsgi(app: str, host: str, port: int, workers: int) -> None:
    """uvicorn (uvloop, httptools) with a2wsgi's WSGI adapter, `workers` processes."""
    import uvicorn

    with internals.serving_state():
        uvicorn.run(
            f"bench.launch:{app}_a2wsgi",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            lifespan="off",
            access_log=False,
            log_level="warning",
        )


def waitress(app: str, host: str, port: int, workers: int) -> None:
    """waitress in `workers` forked processes on one listening socket (it has no workers of its
    own); each process buffers whole requests before its threads see them."""
    import waitress as waitress_server

    with internals.serving_state():
        sock = socket.create_server((host, port), backlog=1024)
        children = []
        for _ in range(workers):
            pid = os.fork()
            if pid == 0:
                waitress_server.serve(
                    LOADERS[app](),
                    sockets=[sock],
                    threads=WAITRESS_THREADS,
                    connection_limit=1000,
                    _quiet=True,
                )
                os._exit(0)
            children.append(pid)
        _wait_children(children)


def _wait_children(children: list[int]) -> None:
    """Wait for the forked children; SIGTERM/SIGQUIT/SIGINT are passed on to them."""

    def forward(signum: int, _frame: Any) -> None:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
        signal.signal(sig, forward)
    for pid in children:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break


CANDIDATES: dict[str, Callable[[str, str, int, int], None]] = {
    "gunicorn sync": gunicorn("sync"),
    "gunicorn gthread": gunicorn("gthread"),
    "granian wsgi": granian_wsgi,
    "granian buffered": granian_buffered,
    "granian inline": granian_inline,
    "uvicorn a2wsgi": uvicorn_a2wsgi,
    "waitress": waitress,
}
"""Each candidate by the name the table shows."""


def command(server: str, app: str) -> tuple[str, ...]:
    """The command line that serves `app` with `server` (bench/server.py adds host/port/workers)."""
    return (sys.executable, "-m", "bench.launch", server, app)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one app with one candidate until stopped."""
    parser = argparse.ArgumentParser(prog="python -m bench.launch", description=__doc__)
    parser.add_argument("server", choices=tuple(CANDIDATES))
    parser.add_argument("app", choices=APPS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    CANDIDATES[args.server](args.app, args.host, args.port, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
