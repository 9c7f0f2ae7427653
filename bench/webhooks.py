"""Webhook delivery lag: feed events written to the store, delivered by a real `workflow-authz
deliver` process to one receiver on loopback, each signature verified.

Two runs per backend, `--events` events each: `paced` writes them at `--rate` per second (the
lag of an event that finds no queue), `burst` writes them as fast as the store takes them, one
transaction each (the lag then includes the queue; delivered/s is the throughput of one
endpoint, whose events go one at a time, in order). Lag: from the event's `at` (set in its
transaction, just before the commit) to its arrival at the receiver. Floor: one POST of the same
body straight to the receiver with the delivery's own client (no store), measured in the same run.

    python -m bench.webhooks [--events 1000] [--rate 100] [--backend sqlite|postgres|both] [--quick]

Its helpers also start `deliver` processes for the tests (`delivering`).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from standardwebhooks import Webhook

from bench import cli, internals, table
from bench.cli import Progress
from bench.internals import config_default
from bench.propagation import percentile
from bench.receiver import Received, Receiver, receiving, wait_until
from bench.server import STOP_TIMEOUT, server_env
from bench.store import Content, temporary_store

QUICK_ENV = {
    "WORKFLOW_AUTHZ_WEBHOOK_ALLOW_PRIVATE": "true",
    "WORKFLOW_AUTHZ_WEBHOOK_TIMEOUT": "2",
    "WORKFLOW_AUTHZ_WEBHOOK_BACKOFF_BASE": "0.02",
    "WORKFLOW_AUTHZ_WEBHOOK_BACKOFF_CAP": "0.2",
    "WORKFLOW_AUTHZ_WEBHOOK_POLL_INTERVAL": "0.02",
}
"""Settings for deliveries to a receiver on loopback, with backoff and polling made tiny."""
MODES = ("paced", "burst")
COLUMNS = table.columns(
    "| backend | mode | events | received | duplicates | bad signatures | lag p50 ms "
    "| lag p99 ms | lag max ms | delivered/s | deliver CPU ms/event | floor POST p50 ms "
    "| lag p50 / floor |"
)
WAIT = 300.0
POLL = "WORKFLOW_AUTHZ_WEBHOOK_POLL_INTERVAL"


@dataclass(frozen=True)
class Options:
    events: int = 1000
    rate: float = 100.0
    backends: tuple[str, ...] = ("sqlite", "postgres")
    floor_posts: int = 200
    poll: float = config_default("WEBHOOK_POLL_INTERVAL")
    """The loop's wait when it has nothing to send: the default, as operators run it."""


QUICK = {"events": 30, "rate": 200.0, "floor_posts": 20}


@dataclass(frozen=True)
class Result:
    backend: str
    mode: str
    events: int
    received: int
    duplicates: int
    bad_signatures: int
    lags: tuple[float, ...]
    seconds: float
    """From the first event's write to the last one's arrival."""
    floor: float
    cpu: float
    """CPU seconds the deliver process used for the run."""


# -- deliver processes (also for the tests) --------------------------------------------------------


@dataclass
class Delivering:
    """A running `workflow-authz deliver` and its output."""

    process: subprocess.Popen[bytes]
    output: IO[bytes]

    def kill(self) -> None:
        """kill -9: no attempt finished, no lease freed."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)

    def cpu(self) -> float:
        """Seconds of CPU the process has used so far (user and system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        with open(f"/proc/self/fd/{self.output.fileno()}", "rb") as log:
            return log.read().decode("utf-8", "replace")


def deliver_command() -> list[str]:
    """`workflow-authz deliver`: the console script beside this interpreter, else the module."""
    script = Path(sys.executable).parent / "workflow-authz"
    if script.exists():
        return [str(script), "deliver"]
    return [sys.executable, "-m", "service.cli", "deliver"]


@contextmanager
def delivering(database_url: str, env: Mapping[str, str] | None = None) -> Iterator[Delivering]:
    """A `deliver` process on the store until the block ends; then SIGTERM (SIGKILL if it
    lingers)."""
    output = tempfile.TemporaryFile()
    process = subprocess.Popen(
        deliver_command(),
        env=server_env(database_url, {**QUICK_ENV, **(env or {})}),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield Delivering(process, output)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        output.close()


def sequence(ids: Sequence[str]) -> list[int]:
    """Event numbers from webhook ids (`evt_<tenant>_<n>`)."""
    return [int(i.rsplit("_", 1)[1]) for i in ids]


def order_kept(ids: Sequence[str]) -> bool:
    """Whether arrivals keep feed order: each is the next event or, after a crash or a lost
    answer, the one before again; never a later one first."""
    numbers = sequence(ids)
    highest = numbers[0] - 1 if numbers else 0
    for n in numbers:
        if n not in (highest, highest + 1):
            return False
        highest = max(highest, n)
    return True


def duplicates(ids: Sequence[str]) -> int:
    """Arrivals beyond the first of each event."""
    return len(ids) - len(set(ids))


def unverified(arrivals: Sequence[Received], secret: str) -> int:
    """Arrivals whose signature `standardwebhooks` does not verify with the secret."""
    bad = 0
    for seen in arrivals:
        try:
            Webhook(secret).verify(seen.body, seen.headers)
        except Exception:  # noqa: BLE001 - any refusal counts
            bad += 1
    return bad


# -- the benchmark -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table; 1 if an event was lost, arrived out of order or unverified."""
    return cli.main(parse_args(argv), run, render, _failed)


def _failed(results: Sequence[Result]) -> bool:
    return any(r.received != r.events or r.bad_signatures for r in results)


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = cli.parser("bench.webhooks", __doc__)
    cli.add_backend(parser)
    parser.add_argument("--events", type=cli.positive(int), help="events per run (default 1000)")
    parser.add_argument("--rate", type=cli.positive(float), help="paced events/s (default 100)")
    parser.add_argument("--poll", type=cli.positive(float), help="the loop's idle poll, s")
    args = parser.parse_args(argv)
    return cli.options(Options(backends=cli.backends(parser, args.backend)), QUICK, args)


def run(options: Options, progress: Progress = lambda _: None) -> list[Result]:
    """Each backend: a new store, one receiver and endpoint, one deliver process, both modes."""
    results = []
    for backend in options.backends:
        content = Content(internals.workflow(), tenants=1, assessments_per_tenant=0)
        with temporary_store(backend, content) as store, receiving() as receiver:
            tenant = content.tenant(0)
            _, secret = internals.add_webhook(store.url, tenant, receiver.url())
            floor = _floor(receiver, options.floor_posts)
            with delivering(store.url, {POLL: str(options.poll)}) as process:
                internals.write_feed_events(store.url, tenant, 1, None, "warm-up")
                wait_until(lambda: len(receiver.at()) == 1, WAIT, "the deliver process")
                for mode in MODES:
                    progress(f"{backend}: {options.events} events, {mode}")
                    cpu = process.cpu()
                    one = _one(backend, store.url, tenant, receiver, secret, mode, options, floor)
                    results.append(replace(one, cpu=process.cpu() - cpu))
    return results


def _floor(receiver: Receiver, posts: int) -> float:
    """The median round trip of one POST of a delivery's size to the receiver, no store."""
    body = b'{"type":"assessment.visibility","data":{' + b'"x":"' + b"y" * 200 + b'"}}'
    times = []
    for _ in range(posts):
        started = time.perf_counter()
        if not internals.post(receiver.url("/floor"), body, 10.0):
            raise RuntimeError("the receiver did not answer the floor's POST")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _one(
    backend: str,
    url: str,
    tenant: str,
    receiver: Receiver,
    secret: str,
    mode: str,
    options: Options,
    floor: float,
) -> Result:
    """Write the run's events, wait for every one to arrive, and measure."""
    before = len(receiver.at())
    started = time.time()
    rate = options.rate if mode == "paced" else None
    internals.write_feed_events(url, tenant, options.events, rate, f"{mode}-{os.getpid()}")
    wait_until(lambda: len(receiver.at()) - before >= options.events, WAIT, "every event")
    seen = receiver.at()[before:]
    made = internals.event_times(url, tenant)
    first: dict[str, float] = {}
    for arrival in seen:
        first.setdefault(arrival.headers["webhook-id"], arrival.wall)
    ids = [s.headers["webhook-id"] for s in seen]
    if not order_kept(ids):
        raise RuntimeError(f"{mode}: events arrived out of feed order")
    return Result(
        backend=backend,
        mode=mode,
        events=options.events,
        received=len(first),
        duplicates=duplicates(ids),
        bad_signatures=unverified(seen, secret),
        lags=tuple(max(0.0, first[i] - made[i]) for i in first),
        seconds=max(first.values()) - started,
        floor=floor,
        cpu=0.0,
    )


def render(results: Sequence[Result], options: Options) -> str:
    rows = [
        [
            r.backend,
            r.mode,
            str(r.events),
            str(r.received),
            str(r.duplicates),
            str(r.bad_signatures),
            *(f"{percentile(r.lags, q) * 1000:.1f}" for q in (50, 99, 100)),
            f"{r.received / r.seconds:.0f}",
            f"{r.cpu / r.received * 1000:.2f}",
            f"{r.floor * 1000:.2f}",
            f"{percentile(r.lags, 50) / r.floor:.1f}",
        ]
        for r in results
    ]
    return table.render(COLUMNS, rows, _legend(options))


def _legend(options: Options) -> list[str]:
    return [
        f"One `workflow-authz deliver` process (polling every {options.poll:g} s when idle), one "
        "endpoint, one threaded http.server receiver on loopback answering 200 at once.",
        f"paced: {options.rate:g} events/s; burst: as fast as one writer commits them. Lag: from "
        "the event's `at` (in its transaction) to its first arrival.",
        "floor: one POST of a delivery's size to the same receiver with the delivery's client, "
        "no store; every arrival's signature verified with standardwebhooks. CPU: the deliver "
        "process's user and system time over the run, per event received (load-independent).",
    ]


if __name__ == "__main__":
    sys.exit(main())
