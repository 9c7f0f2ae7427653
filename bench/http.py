"""HTTP benchmark: wrk against `workflow-authz serve` (gunicorn, sync workers) on this machine.

In one run, with the same worker count and wrk settings for every row:
  constant   GET /bench/constant from bench/floor.py: the service's app and gunicorn settings
             with a view that returns a constant JSON object -- the framework's floor;
  authorize  authenticated POST /authorize with the `assessment` form, spread over many
             tenants and assessments (every answer of a sample is checked first);
  batch      POST /authorize/batch with 100 questions per request (one tenant per batch).
Figures: requests/s and p50/p99 latency from wrk; decisions/s; authorize/constant throughput
(target >= 0.6) and batch/single decisions per second (target >= 10).

    python -m bench.http [--backend sqlite|postgres|both] [--workers 4] [--duration 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.floor import PATH as CONSTANT_PATH
from bench.server import Server, api_headers, create_api_key, serving
from bench.store import BACKENDS, Content, Store, postgres_available, temporary_store
from service.config import load_config
from service.workflows import Workflow, load_workflow

WRK = "/usr/bin/wrk"
TARGET_FLOOR_RATIO = 0.6
TARGET_BATCH_RATIO = 10.0
MARKER = "WRK_RESULT "
FLOOR_COMMAND = (sys.executable, "-m", "bench.floor")
COLUMNS = (
    "endpoint",
    "backend",
    "workers",
    "conns",
    "requests",
    "req/s",
    "decisions/s",
    "p50 ms",
    "p99 ms",
    "errors",
    f"vs constant (≥{TARGET_FLOOR_RATIO:g})",
    f"batch/single (≥{TARGET_BATCH_RATIO:g})",
)

Body = dict[str, Any]


@dataclass(frozen=True)
class Options:
    """What to run: stores, server and wrk settings, and the request mix."""

    backends: tuple[str, ...] = BACKENDS
    tenants: int = 1000
    working_set: int = 500
    """Tenants the requests spread over (all fit in the policy cache)."""
    assessments_per_tenant: int = 20
    workers: int = 4
    connections: int = 8
    duration: float = 5.0
    """Seconds of one timed wrk run; every endpoint gets `rounds` of them, interleaved."""
    rounds: int = 3
    warmup: float = 2.0
    bodies: int = 2000
    """Distinct POST /authorize bodies wrk cycles through."""
    batch_size: int = 100
    batches: int = 100
    checked: int = 100
    """Single questions whose answers are checked against the generated policy before timing."""
    seed: str = "http"

    @classmethod
    def quick(cls, backends: tuple[str, ...]) -> Options:
        """A tiny run for tests: few tenants, one-second wrk runs."""
        return cls(
            backends=backends,
            tenants=5,
            working_set=5,
            assessments_per_tenant=5,
            workers=1,
            connections=2,
            duration=1.0,
            rounds=1,
            warmup=0.0,
            bodies=50,
            batches=5,
            checked=10,
        )


@dataclass(frozen=True)
class WrkResult:
    """What wrk measured in one timed run (or the median of several)."""

    requests: int
    seconds: float
    errors: int
    p50_us: float
    p99_us: float

    @property
    def per_second(self) -> float:
        """Requests answered per second."""
        return self.requests / self.seconds


@dataclass(frozen=True)
class Row:
    """One table row: an endpoint on a backend, and what wrk measured."""

    endpoint: str
    backend: str
    decisions_per_request: int
    wrk: WrkResult
    wrong_answers: int = 0

    @property
    def decisions_per_second(self) -> float:
        """Decisions per second: requests per second times the questions in each."""
        return self.wrk.per_second * self.decisions_per_request


@dataclass(frozen=True)
class Load:
    """A wrk load: method, path, headers and the bodies wrk cycles through."""

    method: str
    path: str
    headers: dict[str, str]
    bodies: tuple[str, ...] = ("",)


@dataclass(frozen=True)
class Endpoint:
    """One row's target: a running server, the wrk script that loads it, what it decides."""

    name: str
    backend: str
    server: Server
    script: Path
    decisions_per_request: int
    wrong_answers: int


@dataclass(frozen=True)
class Mix:
    """Generated questions with the answers the generated policy gives them."""

    singles: list[tuple[Body, bool]]
    batches: list[list[tuple[Body, bool]]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run every row, print the table; 1 if any checked answer was wrong or any request failed."""
    options = parse_args(argv)
    rows = run(options, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(render(rows, options))
    return 1 if any(r.wrong_answers or r.wrk.errors for r in rows) else 0


def parse_args(argv: Sequence[str] | None) -> Options:
    """Options from the command line; PostgreSQL is dropped from `both` when unreachable."""
    parser = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__)
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="both")
    parser.add_argument("--workers", type=int, help="gunicorn sync workers (default 4)")
    parser.add_argument("--connections", type=int, help="wrk connections (default 8)")
    parser.add_argument("--duration", type=float, help="seconds per timed wrk run (default 5)")
    parser.add_argument("--rounds", type=int, help="timed runs per row, interleaved (default 3)")
    parser.add_argument("--tenants", type=int, help="tenants in the store (default 1000)")
    parser.add_argument("--quick", action="store_true", help="a tiny, fast run (for tests)")
    args = parser.parse_args(argv)
    if not Path(WRK).exists():
        parser.error(f"{WRK} is missing: install Debian's wrk (apt-get install wrk)")
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    if "postgres" in backends and not postgres_available():
        if args.backend == "postgres":
            parser.error("PostgreSQL is not reachable (set WORKFLOW_AUTHZ_BENCH_PG_URL)")
        print("PostgreSQL is not reachable: measuring SQLite only.", file=sys.stderr)
        backends = ("sqlite",)
    options = Options.quick(backends) if args.quick else Options(backends)
    given = {
        "workers": args.workers,
        "connections": args.connections,
        "duration": args.duration,
        "rounds": args.rounds,
        "tenants": args.tenants,
    }
    options = replace(options, **{k: v for k, v in given.items() if v is not None})
    if min(options.workers, options.connections, options.rounds, options.duration) <= 0:
        parser.error("--workers, --connections, --rounds and --duration must be positive")
    if options.tenants < 1:
        parser.error("--tenants must be positive")
    return replace(options, working_set=min(options.working_set, options.tenants))


def run(options: Options, progress: Callable[[str], None] = lambda _: None) -> list[Row]:
    """Start every server (the floor, one per backend), then time them in interleaved rounds."""
    # Every server stays up for the whole run and only one is loaded at a time, so a burst of
    # load from elsewhere on this machine lands on every row alike instead of skewing one ratio.
    workflow = load_workflow(Path(load_config()["POLICY_DIR"]) / "workflow.toml")
    content = Content(workflow, options.tenants, options.assessments_per_tenant)
    mix = make_mix(content, workflow, options)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wa_wrk_")))
        endpoints: list[Endpoint] = []
        for backend in options.backends:
            progress(f"{backend}: populating {options.tenants} tenants, starting the servers")
            store = stack.enter_context(temporary_store(backend, content))
            if not endpoints:
                floor = stack.enter_context(
                    serving(store.url, workers=options.workers, command=FLOOR_COMMAND)
                )
                endpoints.append(floor_endpoint(floor, folder))
            server = stack.enter_context(serving(store.url, workers=options.workers))
            endpoints += backend_endpoints(server, store, mix, options, folder)
        return measure(endpoints, options, progress)


# -- the request mix -----------------------------------------------------------------------------


def make_mix(content: Content, workflow: Workflow, options: Options) -> Mix:
    """Single questions over a working set of tenants; batches each about one of those tenants."""
    rng = random.Random(f"{options.seed}:{content.tenants}")
    working = rng.sample(range(content.tenants), options.working_set)
    singles = [question(rng, content, workflow, rng.choice(working)) for _ in range(options.bodies)]
    batches = []
    for _ in range(options.batches):
        index = rng.choice(working)
        batches.append([question(rng, content, workflow, index) for _ in range(options.batch_size)])
    return Mix(singles, batches)


def question(
    rng: random.Random, content: Content, workflow: Workflow, index: int
) -> tuple[Body, bool]:
    """A random role and action about a random assessment of tenant `index`, and its answer."""
    found = rng.choice(content.assessments(index))
    role, action = rng.choice(workflow.roles).id, rng.choice(workflow.actions)
    body = {"tenant": found.tenant, "role": role, "action": action, "assessment": found.id}
    return body, (role, found.area, found.phase, action) in content.cells(index)


def batch_body(items: Sequence[tuple[Body, bool]]) -> Body:
    """A POST /authorize/batch body: each question with an id."""
    return {"requests": [{"id": f"q{i}", **body} for i, (body, _) in enumerate(items)]}


# -- measuring -----------------------------------------------------------------------------------


def floor_endpoint(server: Server, folder: Path) -> Endpoint:
    """GET /bench/constant on the floor server, whose answer is checked once."""
    reply = server.request("GET", CONSTANT_PATH)
    wrong = 0 if reply.status == 200 and reply.json().get("allowed") is True else 1
    script = write_script(folder / "constant.lua", Load("GET", CONSTANT_PATH, {}))
    return Endpoint("constant", "—", server, script, 1, wrong)


def backend_endpoints(
    server: Server, store: Store, mix: Mix, options: Options, folder: Path
) -> list[Endpoint]:
    """POST /authorize and /authorize/batch on the store's server, a sample of answers checked."""
    key = create_api_key(store.url)
    headers = api_headers(key)
    wrong = check_singles(server, key, mix.singles[: options.checked])
    wrong_batch = sum(check_batch(server, key, items) for items in mix.batches[:3])
    singles = tuple(json.dumps(body) for body, _ in mix.singles)
    batches = tuple(json.dumps(batch_body(items)) for items in mix.batches)
    single = Load("POST", "/authorize", headers, singles)
    batch = Load("POST", "/authorize/batch", headers, batches)
    name = f"batch ×{options.batch_size}"
    return [
        Endpoint(
            "authorize",
            store.backend,
            server,
            write_script(folder / f"authorize-{store.backend}.lua", single),
            1,
            wrong,
        ),
        Endpoint(
            name,
            store.backend,
            server,
            write_script(folder / f"batch-{store.backend}.lua", batch),
            options.batch_size,
            wrong_batch,
        ),
    ]


def write_script(path: Path, load: Load) -> Path:
    """Write the wrk script of a load; its path."""
    path.write_text(lua_script(load), encoding="utf-8")
    return path


def measure(
    endpoints: Sequence[Endpoint], options: Options, progress: Callable[[str], None]
) -> list[Row]:
    """A warm-up run of each endpoint, then `rounds` rounds with one timed run of each."""
    if options.warmup > 0:
        progress("warm-up: every endpoint")
        for e in endpoints:
            wrk(e.server, e.script, options.warmup, options)
    timed: list[list[WrkResult]] = [[] for _ in endpoints]
    for number in range(options.rounds):
        progress(f"round {number + 1} of {options.rounds}: every endpoint")
        for e, runs in zip(endpoints, timed, strict=True):
            runs.append(wrk(e.server, e.script, options.duration, options))
    return [
        Row(e.name, e.backend, e.decisions_per_request, median_result(runs), e.wrong_answers)
        for e, runs in zip(endpoints, timed, strict=True)
    ]


def median_result(runs: Sequence[WrkResult]) -> WrkResult:
    """All requests and errors of the runs, with the median rate, p50 and p99 of the runs."""
    rate = statistics.median(r.per_second for r in runs)
    requests = sum(r.requests for r in runs)
    return WrkResult(
        requests=requests,
        seconds=requests / rate,
        errors=sum(r.errors for r in runs),
        p50_us=statistics.median(r.p50_us for r in runs),
        p99_us=statistics.median(r.p99_us for r in runs),
    )


def check_singles(server: Server, key: str, items: Sequence[tuple[Body, bool]]) -> int:
    """How many of these questions get another answer than the generated policy's."""
    wrong = 0
    for body, expected in items:
        reply = server.post_json("/authorize", body, key)
        wrong += reply.status != 200 or reply.json().get("allowed") is not expected
    return wrong


def check_batch(server: Server, key: str, items: Sequence[tuple[Body, bool]]) -> int:
    """How many answers of one batch differ from the generated policy's (all, if it failed)."""
    reply = server.post_json("/authorize/batch", batch_body(items), key)
    if reply.status != 200:
        return len(items)
    results = reply.json()["results"]
    answers = [r.get("allowed") for r in results]
    return sum(got is not expected for got, (_, expected) in zip(answers, items, strict=True))


def wrk(server: Server, script: Path, seconds: float, options: Options) -> WrkResult:
    """Run wrk for `seconds` with the script; its figures parsed from the script's summary."""
    argv = [
        shutil.which("wrk") or WRK,
        "--threads",
        "1",
        "--connections",
        str(options.connections),
        "--duration",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--script",
        str(script),
        server.url + "/",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


def parse_wrk(output: str) -> WrkResult:
    """The figures the script's done() printed after MARKER."""
    for line in output.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line.removeprefix(MARKER))
            errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
            return WrkResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                errors=errors,
                p50_us=data["p50_us"],
                p99_us=data["p99_us"],
            )
    raise RuntimeError(f"wrk printed no summary:\n{output}")


def lua_string(text: str) -> str:
    """A Lua string literal for ASCII text (JSON's escapes are valid Lua escapes then)."""
    if not text.isascii():
        raise ValueError("wrk bodies must be ASCII")
    return json.dumps(text)


def lua_script(load: Load) -> str:
    """A wrk script: every body pre-formatted as a request, cycled; done() prints the figures."""
    headers = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in load.headers.items())
    bodies = ",\n".join(lua_string(b) for b in load.bodies)
    return f"""
local bodies = {{
{bodies}
}}
local headers = {{ {headers} }}
local prepared = {{}}
local n = 0

function init(args)
  for i, body in ipairs(bodies) do
    if body == "" then body = nil end
    prepared[i] = wrk.format({lua_string(load.method)}, {lua_string(load.path)}, headers, body)
  end
end

function request()
  n = n % #prepared + 1
  return prepared[n]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{MARKER}{{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


# -- the table -----------------------------------------------------------------------------------


def render(rows: Sequence[Row], options: Options) -> str:
    """One table, a row per endpoint and backend, then how the figures were taken."""
    cells = [_cells(r, rows, options) for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    lines = [_line(COLUMNS, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [_line(row, widths) for row in cells]
    return "\n".join([*lines, "", *_legend(options)])


def _cells(row: Row, rows: Sequence[Row], options: Options) -> list[str]:
    floor = next((r for r in rows if r.endpoint == "constant"), None)
    single = next((r for r in rows if r.endpoint == "authorize" and r.backend == row.backend), None)
    vs_floor = "—"
    if row.endpoint == "authorize" and floor is not None:
        vs_floor = _judge(row.wrk.per_second / floor.wrk.per_second, TARGET_FLOOR_RATIO)
    vs_single = "—"
    if row.endpoint.startswith("batch") and single is not None:
        ratio = row.decisions_per_second / single.decisions_per_second
        vs_single = _judge(ratio, TARGET_BATCH_RATIO)
    errors = f"{row.wrk.errors}" + (f", {row.wrong_answers} wrong" if row.wrong_answers else "")
    return [
        row.endpoint,
        row.backend,
        str(options.workers),
        str(options.connections),
        f"{row.wrk.requests:,}",
        f"{row.wrk.per_second:,.0f}",
        f"{row.decisions_per_second:,.0f}",
        f"{row.wrk.p50_us / 1000:.2f}",
        f"{row.wrk.p99_us / 1000:.2f}",
        errors,
        vs_floor,
        vs_single,
    ]


def _judge(ratio: float, target: float) -> str:
    return f"{ratio:.2f} {'met' if ratio >= target else 'MISSED'}"


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |"


def _legend(options: Options) -> list[str]:
    """What the rows mean and how they were measured, printed under the table."""
    return [
        f"wrk (1 thread, {options.connections} connections) against gunicorn with "
        f"{options.workers} sync workers on 127.0.0.1; every server up for the whole run; after "
        f"a {options.warmup:g} s warm-up each, {options.rounds} rounds of one {options.duration:g} "
        "s run per row; req/s, p50 and p99 (wrk's histogram) are the median of the rounds.",
        "constant: GET /bench/constant, a constant JSON object from the service's app and "
        "gunicorn settings plus one bench route (bench/floor.py) -- the framework's floor.",
        f"authorize: POST /authorize {{tenant, role, action, assessment}} with an all-tenant key, "
        f"cycling {options.bodies} bodies over {options.working_set} of {options.tenants} "
        f"tenants ({options.assessments_per_tenant} assessments each); {options.checked} answers "
        "checked against the generated policy first.",
        f"batch: POST /authorize/batch, {options.batch_size} questions about one tenant per "
        f"request, cycling {options.batches} bodies; decisions/s = req/s x {options.batch_size}.",
        "errors: wrk's connect/read/write/timeout errors and non-2xx answers (plus wrong "
        "answers among the checked ones).",
    ]


if __name__ == "__main__":
    sys.exit(main())
