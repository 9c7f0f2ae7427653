"""The floor: the service's own app plus one constant-JSON route, on Flask + gunicorn sync workers.

bench/http.py compares POST /authorize with GET /bench/constant served by this module, which
builds the app with service.create_app() (same hooks, error handlers, metrics) and runs it with
gunicorn's sync workers, the way a hand-written Flask service is usually deployed: issue 12 sets
the product's targets against this floor on as many worker processes, whatever server
`workflow-authz serve` itself runs (bench/servers.py serves the same app on every candidate).
The route lives here, in bench code: the service itself has no such endpoint.

    python -m bench.floor --host 127.0.0.1 --port 8081 --workers 4
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from flask import Flask, Response, jsonify

from bench.internals import create_app, serve

PATH = "/bench/constant"
CONSTANT: dict[str, Any] = {
    "allowed": True,
    "tenant": "default",
    "role": "parent",
    "action": "view",
    "area": "behaviour",
    "phase": "completed",
    "assessment": None,
    "policy_version": 1,
    "rule": ["default", "parent", "behaviour", "completed", "view"],
    "reason": "A constant answer of about the size of a decision, to measure the framework alone.",
}
"""Shaped like a decision so that both endpoints serialise about as much JSON."""


def create_floor_app() -> Flask:
    """The service's app with one extra route that answers a constant JSON object."""
    app = create_app()

    @app.get(PATH)
    def constant() -> Response:
        """The same JSON object every time."""
        return jsonify(CONSTANT)

    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the floor app with gunicorn sync workers (bench/internals.py's `serve`)."""
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    serve(create_floor_app, args.host, args.port, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
