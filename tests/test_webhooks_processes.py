"""Webhook delivery by real processes: `workflow-authz deliver` killed with SIGKILL mid-burst and
started again (every event arrives at least once, signed, in order), stopped with SIGTERM (the
attempt in flight finishes and is recorded, the leases are freed), and two `workflow-authz serve`
processes on one PostgreSQL, each delivering beside its workers (no event in flight from both
at once, none lost, their deliveries in /metrics)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bench.receiver import Plan, receiving, wait_until
from bench.server import STOP_TIMEOUT, children, server_env, serving
from bench.webhooks import (
    QUICK_ENV,
    deliver_command,
    delivering,
    duplicates,
    order_kept,
    unverified,
)
from service.config import load_config
from service.db import Database
from service.models import WebhookEndpoint
from service.webhooks.delivery import RUNNING, alongside
from tests.test_webhooks_delivery import add, make_events

WAIT = 60.0


def endpoint_rows(url: str) -> list[Any]:
    db = Database(url, 1)
    try:
        with db.read() as conn:
            return list(conn.execute(select(*WebhookEndpoint.__table__.c)))
    finally:
        db.dispose()


def test_kill_9_mid_burst_loses_nothing(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = Database(store_url, 1)
    paced = lambda _path, _n: Plan(delay=0.01)  # noqa: E731 - keeps the burst in progress
    try:
        with receiving(paced) as receiver:
            _, secret = add(db, receiver.url())
            made = make_events(db, 60, prefix="before")
            with delivering(store_url) as first:
                wait_until(lambda: len(receiver.at()) >= 20, WAIT, "part of the burst")
                first.kill()
            at_kill = len(receiver.at())
            assert at_kill < len(made)  # killed mid-burst
            made += make_events(db, 40, prefix="while-down")
            with delivering(store_url):
                wait_until(lambda: set(receiver.ids()) >= set(made), WAIT, "every event")
            ids = receiver.ids()
    finally:
        db.dispose()
    assert order_kept(ids)
    assert unverified(receiver.at(), secret) == 0
    assert [i for n, i in enumerate(ids) if i not in ids[:n]] == made  # first arrivals in order
    with capsys.disabled():
        print(
            f"\nkill -9 test ({store_url.split(':')[0]}): {len(made)} events made, "
            f"{len(ids)} received, {len(set(ids))} distinct, {duplicates(ids)} duplicates, "
            f"{at_kill} had arrived at the kill"
        )


def test_sigterm_finishes_the_attempt_in_flight_and_frees_the_lease(store_url: str) -> None:
    db = Database(store_url, 1)
    try:
        with receiving(lambda _p, _n: Plan(delay=1.0)) as receiver:
            endpoint_id, _ = add(db, receiver.url())
            make_events(db, 3)
            with delivering(store_url) as process:
                wait_until(lambda: len(receiver.at()) == 1, WAIT, "the first attempt")
                process.process.send_signal(signal.SIGTERM)
                assert process.process.wait(STOP_TIMEOUT) == 0
                log = process.log()
    finally:
        db.dispose()
    (row,) = endpoint_rows(store_url)
    assert row.id == endpoint_id
    assert (row.delivered_seq, row.lease_owner, row.lease_until) == (1, None, None)
    assert len(receiver.at()) == 1  # nothing new started once asked to stop
    lines = [json.loads(x) for x in log.splitlines() if '"webhook_delivery"' in x]
    assert [(x["attempt"], x["status"], x["result"]) for x in lines] == [(1, 200, "success")]


def logged(output: str) -> int:
    """How many delivery attempts a process's output records."""
    return sum('"webhook_delivery"' in line for line in output.splitlines())


@pytest.mark.postgres
def test_two_serve_processes_never_send_one_endpoint_twice_at_once(pg_url: str) -> None:
    """Three endpoints, every fourth answer a 500 (each frees the lease, so the two delivery
    loops keep taking endpoints from each other); the receiver counts overlaps."""
    answer: Callable[[str, int], Plan] = lambda _p, n: Plan(500 if n % 4 == 3 else 200, 0.005)  # noqa: E731
    # No attempt may time out however loaded the machine: a sender that gave up would let the
    # next attempt begin while the receiver still holds the first, which is no double flight.
    patient = {**QUICK_ENV, "WORKFLOW_AUTHZ_WEBHOOK_TIMEOUT": "30"}
    db = Database(pg_url, 1)
    try:
        with receiving(answer) as receiver:
            paths = [f"/hook{i}" for i in range(3)]
            secrets = {p: add(db, receiver.url(p))[1] for p in paths}
            with (
                serving(pg_url, workers=1, env=patient) as a,
                serving(pg_url, workers=1, env=patient) as b,
            ):
                for server in (a, b):  # each one's delivery process has started
                    wait_until(lambda s=server: RUNNING in s.log_tail(10_000), WAIT, "deliver")  # type: ignore[misc]
                made = make_events(db, 40)
                for p in paths:
                    wait_until(lambda p=p: set(receiver.ids(p)) >= set(made), WAIT, p)  # type: ignore[misc]
                attempts = lambda: [logged(s.log_tail(100_000)) for s in (a, b)]  # noqa: E731
                wait_until(lambda: sum(attempts()) == len(receiver.received), WAIT, "the lines")
                sent = attempts()
                scraped = a.request("GET", "/metrics").body.decode()
    finally:
        db.dispose()
    assert receiver.overlaps == 0
    for p in paths:
        ids = [
            i
            for i, seen in zip(receiver.ids(p), receiver.at(p), strict=True)
            if seen.answered == 200
        ]
        assert ids == made  # each event answered 200 once, in order: none lost, none twice
        assert order_kept(receiver.ids(p))
        assert unverified(receiver.at(p), secrets[p]) == 0
    assert all(n > 0 for n in sent), sent  # both processes delivered
    assert 'workflow_authz_webhook_deliveries_total{result="success"}' in scraped


def test_alongside_runs_one_delivery_process_and_stops_it(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `serve` wraps its server in: a `deliver` process of this one, reading the same
    environment, started again when killed, ended with the block; none with
    WEBHOOK_DELIVERY=false."""
    for name, value in {**QUICK_ENV, "WORKFLOW_AUTHZ_DATABASE_URL": sqlite_url}.items():
        monkeypatch.setenv(name, value)
    db = Database(sqlite_url, 1)
    try:
        with receiving() as receiver:
            add(db, receiver.url())
            with alongside(load_config({"WEBHOOK_DELIVERY": False})):
                assert delivery_children() == []
            with alongside(load_config()):
                wait_until(lambda: len(delivery_children()) == 1, WAIT, "a deliver process")
                (child,) = delivery_children()
                made = make_events(db, 2)
                wait_until(lambda: receiver.ids() == made, WAIT, "the events")
                wait_until(lambda: endpoint_rows(sqlite_url)[0].lease_owner is None, WAIT, "done")
                os.kill(child, signal.SIGKILL)
                wait_until(lambda: delivery_children() not in ([], [child]), WAIT, "another one")
                (again,) = delivery_children()
                made += make_events(db, 1, prefix="after-restart")
                wait_until(lambda: set(receiver.ids()) == set(made), WAIT, "the one after")
            assert order_kept(receiver.ids())
            for pid in (child, again):
                assert not Path(f"/proc/{pid}").exists()  # ended and reaped
    finally:
        db.dispose()


def delivery_children() -> list[int]:
    """This process's children that run `deliver`."""
    found = []
    for pid in children(os.getpid()):
        try:
            if b"deliver" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass  # ended meanwhile
    return found


def test_deliver_refuses_a_store_without_the_current_schema(tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    ran = subprocess.run(
        deliver_command(),
        env=server_env(empty),
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT * 4,
    )
    assert ran.returncode == 1
    assert "the schema is not current: run `workflow-authz init` first" in ran.stderr
