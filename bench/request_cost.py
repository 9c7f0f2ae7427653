"""What one request costs the product itself: the WSGI app called in this process, no server.

Every row calls the service's app (`create_app`, plus bench/floor.py's constant route) through
`app.wsgi_app(environ, start_response)` with a prebuilt environ, so neither a server nor a socket
is in the figure -- only what the app does per request:
  constant   GET /bench/constant: the same app, hooks and error handlers, a constant JSON view --
             the framework's in-process floor;
  authorize  POST /authorize {tenant, role, action, assessment} with an all-tenant key;
  batch      POST /authorize/batch of 100 questions about one tenant.
Figures: µs per request, wall and this process's CPU, each the best of interleaved rounds (on a
shared 2-core machine other processes only ever add time: the best round is the one they
disturbed least), µs per decision, and each row's ratio to the floor's (authorize/constant: the
product's cost in floor units). On PostgreSQL the wall figure includes the server's work and the
round trips, which the CPU figure leaves out. Every answer of the warm-up pass is checked
against the generated policy. Decision log lines are formatted and written, to /dev/null.
`--profile` prints cProfile's top functions of the authorize and batch rows.

    python -m bench.request_cost [--backend sqlite|postgres|both] [--seconds 0.5] [--profile]
"""

from __future__ import annotations

import cProfile
import gc
import io
import json
import logging
import os
import pstats
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Any
from unittest import mock

from flask import Flask
from werkzeug.test import EnvironBuilder

from bench import cli, internals, table
from bench.cli import Progress
from bench.floor import PATH as CONSTANT_PATH
from bench.floor import create_floor_app
from bench.server import api_headers, batch_body
from bench.store import BACKENDS, Asked, Content, temporary_store
from bench.timing import cycle

COLUMNS = table.columns(
    "| endpoint | backend | µs/request | CPU µs/request | µs/decision | × constant "
    "| CPU × constant | answers checked |"
)
LOGGER = "workflow_authz"
"""The service's logger: its handler is pointed at /dev/null for the run."""
Environ = dict[str, Any]


@dataclass(frozen=True)
class Options:
    """What to run and how long to time each row."""

    backends: tuple[str, ...] = BACKENDS
    tenants: int = 200
    working_set: int = 100
    assessments_per_tenant: int = 20
    bodies: int = 500
    batch_size: int = 100
    batches: int = 20
    seconds: float = 0.25
    """Seconds of one timed run of a row."""
    rounds: int = 9
    profile: bool = False
    seed: str = "request_cost"


QUICK: dict[str, Any] = {
    "tenants": 5,
    "working_set": 5,
    "assessments_per_tenant": 5,
    "bodies": 20,
    "batches": 2,
    "seconds": 0.02,
    "rounds": 1,
}
"""A tiny run for tests."""


@dataclass(frozen=True)
class Endpoint:
    """One row: the requests of a timed run, the decisions per request, wrong answers."""

    name: str
    backend: str
    app: Flask
    requests: list[Environ]
    decisions_per_request: int
    wrong_answers: int
    checked: int

    def once(self) -> tuple[float, float]:
        """One timed run: wall and CPU µs per request, the garbage collector paused."""
        app, requests = self.app, self.requests
        gc.disable()
        try:
            wall, cpu = time.perf_counter_ns(), time.process_time_ns()
            for template in requests:
                call(app, template)
            cpu, wall = time.process_time_ns() - cpu, time.perf_counter_ns() - wall
        finally:
            gc.enable()
        return wall / len(requests) / 1000, cpu / len(requests) / 1000


@dataclass(frozen=True)
class Measured:
    """A row and its best wall and CPU µs per request."""

    endpoint: Endpoint
    us_per_request: float
    cpu_us_per_request: float


def main(argv: Sequence[str] | None = None) -> int:
    """Run every row, print the table; 1 if any checked answer was wrong."""
    return cli.main(
        parse_args(argv), run, render, lambda rows: any(m.endpoint.wrong_answers for m in rows)
    )


def parse_args(argv: Sequence[str] | None) -> Options:
    """Options from the command line; PostgreSQL is dropped from `both` when unreachable."""
    parser = cli.parser("bench.request_cost", __doc__)
    cli.add_backend(parser)
    parser.add_argument("--seconds", type=cli.positive(float), help="seconds per timed run")
    parser.add_argument("--rounds", type=cli.positive(int), help="timed runs per row")
    parser.add_argument("--profile", action="store_true", help="cProfile authorize and batch")
    args = parser.parse_args(argv)
    options = cli.options(Options(cli.backends(parser, args.backend)), QUICK, args)
    return replace(options, profile=args.profile)


def run(options: Options, progress: Progress = lambda _: None) -> list[Measured]:
    """Build each backend's store and app, prepare every row, then time them interleaved."""
    content = Content(internals.workflow(), options.tenants, options.assessments_per_tenant)
    singles, batches = _mix(content, options)
    endpoints: list[Endpoint] = []
    with ExitStack() as stack:
        stack.enter_context(_quiet_log())
        for backend in options.backends:
            progress(f"{backend}: populating {options.tenants} tenants")
            store = stack.enter_context(temporary_store(backend, content))
            app = stack.enter_context(_app(store.url))
            key = internals.create_api_key(store.url)
            if not endpoints:
                endpoints.append(_constant(app, options))
            endpoints.append(_authorize(app, backend, key, singles, options))
            endpoints.append(_batch(app, backend, key, batches, options))
            if options.profile:
                for row, calls in ((endpoints[-2], 3000), (endpoints[-1], 30)):
                    print(f"-- {row.name}, {backend}", file=sys.stderr)
                    print(profile(app, row.requests, calls), file=sys.stderr)
        progress(f"timing {len(endpoints)} rows, {options.rounds} rounds")
        rounds = [[e.once() for e in endpoints] for _ in range(options.rounds)]
        return [
            Measured(e, min(r[i][0] for r in rounds), min(r[i][1] for r in rounds))
            for i, e in enumerate(endpoints)
        ]


def _mix(content: Content, options: Options) -> tuple[list[Asked], list[list[Asked]]]:
    """Single questions over a working set of tenants; batches each about one of them."""
    rng = random.Random(f"{options.seed}:{content.tenants}")
    working = content.working(rng, options.working_set)
    singles = content.questions(rng, working, options.bodies)
    batches = []
    for _ in range(options.batches):
        index = rng.choice(working)
        batches.append([content.question(rng, index) for _ in range(options.batch_size)])
    return singles, batches


@contextmanager
def _quiet_log() -> Iterator[None]:
    """The service's log lines formatted and written as in production, but to /dev/null: a
    handler of ours, in place before create_app, which then adds none of its own."""
    logger = logging.getLogger(LOGGER)
    saved = list(logger.handlers)
    with open(os.devnull, "w") as sink:
        handler = logging.StreamHandler(sink)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.handlers[:] = [handler]
        try:
            yield
        finally:
            logger.handlers[:] = saved


@contextmanager
def _app(url: str) -> Iterator[Flask]:
    """The floor app (the service's app plus the constant route) over the store at `url`."""
    settings = {"WORKFLOW_AUTHZ_DATABASE_URL": url, "WORKFLOW_AUTHZ_SECRET_KEY": "bench-" * 8}
    with mock.patch.dict(os.environ, settings):
        app = create_floor_app()
    try:
        yield app
    finally:
        internals.local_of(app).close()


def environ(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Environ:
    """A request's WSGI environ, built once; `call` gives each call a fresh input stream."""
    built: Environ = EnvironBuilder(
        path=path, method=method, headers=list(headers.items()), data=body or None
    ).get_environ()
    built["bench.body"] = body
    return built


def call(app: Flask, template: Environ) -> tuple[str, bytes]:
    """One request through the app's WSGI callable: its status line and body."""
    status: list[str] = []

    def start_response(line: str, _headers: Any, _exc: Any = None) -> Any:
        status.append(line)
        return lambda _data: None

    env = dict(template)
    env["wsgi.input"] = io.BytesIO(template["bench.body"])
    chunks = app.wsgi_app(env, start_response)
    try:
        return status[0], b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()


def _timed_row(
    name: str,
    backend: str,
    app: Flask,
    templates: list[Environ],
    check: Callable[[tuple[str, bytes], int], int],
    per_request: int,
    options: Options,
) -> Endpoint:
    """A row: every template answered once and checked, then a timed run sized to `seconds`."""
    start = time.perf_counter()
    answers = [call(app, t) for t in templates]
    each = (time.perf_counter() - start) / len(templates)
    wrong = sum(check(answer, i) for i, answer in enumerate(answers))
    requests = cycle(templates, max(len(templates), int(options.seconds / each)))
    return Endpoint(name, backend, app, requests, per_request, wrong, len(answers) * per_request)


def _constant(app: Flask, options: Options) -> Endpoint:
    """The floor row."""
    templates = [environ("GET", CONSTANT_PATH, {})]

    def check(answer: tuple[str, bytes], _: int) -> int:
        return int(not answer[0].startswith("200") or not json.loads(answer[1])["allowed"])

    return _timed_row("constant", "—", app, templates, check, 1, options)


def _authorize(
    app: Flask, backend: str, key: str, singles: list[Asked], options: Options
) -> Endpoint:
    """POST /authorize over the mix of single questions."""
    headers = api_headers(key)
    templates = [environ("POST", "/authorize", headers, json.dumps(b).encode()) for b, _ in singles]

    def check(answer: tuple[str, bytes], i: int) -> int:
        ok = answer[0].startswith("200") and json.loads(answer[1])["allowed"] == singles[i][1]
        return int(not ok)

    return _timed_row("authorize", backend, app, templates, check, 1, options)


def _batch(
    app: Flask, backend: str, key: str, batches: list[list[Asked]], options: Options
) -> Endpoint:
    """POST /authorize/batch over the batches."""
    headers = api_headers(key)
    bodies = [json.dumps(batch_body(items)).encode() for items in batches]
    templates = [environ("POST", "/authorize/batch", headers, body) for body in bodies]

    def check(answer: tuple[str, bytes], i: int) -> int:
        if not answer[0].startswith("200"):
            return len(batches[i])
        results = json.loads(answer[1])["results"]
        if len(results) != len(batches[i]):
            return len(batches[i])
        wanted = [want for _, want in batches[i]]
        return sum(r.get("allowed") != w for r, w in zip(results, wanted, strict=True))

    name = f"batch ×{options.batch_size}"
    return _timed_row(name, backend, app, templates, check, options.batch_size, options)


def profile(app: Flask, templates: Sequence[Environ], calls: int, top: int = 40) -> str:
    """cProfile's view of `calls` requests cycling `templates`: the top functions by their own
    time, then by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(calls):
        call(app, templates[i % len(templates)])
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


# -- the table -----------------------------------------------------------------------------------


def render(rows: Sequence[Measured], options: Options) -> str:
    """One table, a row per endpoint and backend, then how the figures were taken."""
    floor = next(m for m in rows if m.endpoint.name == "constant")
    cells = [
        [
            m.endpoint.name,
            m.endpoint.backend,
            f"{m.us_per_request:,.1f}",
            f"{m.cpu_us_per_request:,.1f}",
            f"{m.us_per_request / m.endpoint.decisions_per_request:,.1f}",
            f"{m.us_per_request / floor.us_per_request:.2f}",
            f"{m.cpu_us_per_request / floor.cpu_us_per_request:.2f}",
            f"{m.endpoint.checked - m.endpoint.wrong_answers}/{m.endpoint.checked}",
        ]
        for m in rows
    ]
    legend = [
        "In-process: app.wsgi_app(environ, start_response) with prebuilt environs, no server; "
        f"best of {options.rounds} interleaved rounds of ~{options.seconds:g} s per row "
        "(wall; CPU: this process's time, without PostgreSQL's).",
        f"authorize cycles {options.bodies} bodies over {options.working_set} of "
        f"{options.tenants} tenants ({options.assessments_per_tenant} assessments each); "
        f"batch cycles {options.batches} bodies of {options.batch_size} questions.",
        "× constant: the row's µs per request over the constant-JSON floor's, same app.",
    ]
    return table.render(COLUMNS, cells, legend)


if __name__ == "__main__":
    sys.exit(main())
