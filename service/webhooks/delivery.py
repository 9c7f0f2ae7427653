"""The delivery loop: lease endpoints that have events due, send each its next event, record
the outcome; and `alongside`, which runs it as one process beside `serve`.

Per endpoint, in feed order: the holder of an endpoint's lease sends its head event (the one
after `delivered_seq`) outside any transaction, then records the outcome while it still holds the
lease (leases.py). A 2xx moves the endpoint on by one and the holder goes on to the next event;
anything else schedules a retry with exponential backoff and jitter and frees the lease; an
event that outlived the maximum age makes the endpoint `failing` (its events kept for `webhooks
retry`); 410 Gone disables it. Several endpoints are served at once from a small thread pool, so
one slow receiver never stalls the others, and never two attempts to one endpoint.

A process killed mid-attempt loses nothing: its lease runs out (the timeout and a margin) and
the event, never marked delivered, is sent again -- at least once, never out of order.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row

from service import decision_log, events, metrics
from service.db import Database
from service.errors import ServiceError
from service.limits import MAX_REASON
from service.models import iso, utcnow
from service.webhooks import endpoints, leases, message, transport

log = logging.getLogger("workflow_authz.webhooks")

CONCURRENCY = 8
"""Endpoints one process delivers to at once (one thread each)."""
BATCH = 100
"""Events an endpoint's holder sends in a row before it frees the lease, so endpoints with long
backlogs take turns when there are more of them than threads."""
AHEAD = 20
"""Events read at once from the endpoint's head (sent one by one, each recorded before the next
is sent): one read per AHEAD events instead of one per event."""
RUNNING = "webhook delivery: running as"
"""The line a delivery loop logs when it starts (tests wait for it)."""
LEASE_MARGIN = 5.0
"""Seconds a lease lasts beyond an attempt's timeout: for the store's statements around it."""
GONE = 410
KEEPER_POLL = 0.5
"""Seconds between `serve`'s looks at whether its delivery process still runs."""
RESTART_DELAY = 2.0
"""Seconds before `serve` starts its delivery process again after it ended (a store that
refuses it at start would otherwise be retried in a tight loop)."""


@dataclass(frozen=True)
class Settings:
    """The WEBHOOK_* settings the loop runs with (config.py says what each is for)."""

    timeout: float
    backoff_base: float
    backoff_cap: float
    max_age: float
    poll_interval: float
    allow_private: bool

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Settings:
        return cls(
            timeout=config["WEBHOOK_TIMEOUT"],
            backoff_base=config["WEBHOOK_BACKOFF_BASE"],
            backoff_cap=config["WEBHOOK_BACKOFF_CAP"],
            max_age=config["WEBHOOK_MAX_AGE"],
            poll_interval=config["WEBHOOK_POLL_INTERVAL"],
            allow_private=config["WEBHOOK_ALLOW_PRIVATE"],
        )

    @property
    def lease(self) -> timedelta:
        """How long a lease lasts: longer than an attempt, which the deadline cuts off."""
        return timedelta(seconds=self.timeout + LEASE_MARGIN)


def backoff(settings: Settings, attempts: int, draw: float) -> float:
    """Seconds before the next attempt after `attempts` failed ones: base * 2^(attempts-1), at
    most the cap, scaled by `draw` in [0, 1) into its upper half (jitter that spreads retries
    of many endpoints without ever retrying sooner than half the planned wait)."""
    planned = min(settings.backoff_cap, settings.backoff_base * 2.0 ** min(attempts - 1, 64))
    return planned * (0.5 + draw / 2)


def outcome(
    settings: Settings, answer: transport.Answer, before: int, event_id: str, made: datetime
) -> leases.Outcome:
    """What an attempt's answer changes for its endpoint (`before` failed attempts at this
    event before it; the event made at `made`)."""
    now = utcnow()
    if answer.ok:
        return leases.Outcome(True, answer.status, None, now, 0, lease_until=now + settings.lease)
    attempts = before + 1
    error = (answer.error or "")[:MAX_REASON]
    failed = leases.Outcome(False, answer.status, error, now, attempts)
    if answer.status == GONE:
        reason = f"answered 410 Gone at {iso(now)}: disabled (`workflow-authz webhooks retry`)"
        return replace(failed, state="disabled", state_reason=reason)
    if (now - made).total_seconds() > settings.max_age:
        reason = (
            f"event {event_id} outlived "
            f"the maximum age ({settings.max_age:g} s) after {attempts} attempts; last: {error}"
        )
        return replace(failed, state="failing", state_reason=reason[:MAX_REASON])
    wait = backoff(settings, attempts, random.random())
    return replace(failed, next_attempt_at=now + timedelta(seconds=wait))


def result(answer: transport.Answer) -> str:
    """The attempt's result as metrics count it (metrics.DELIVERY_RESULTS)."""
    if answer.ok:
        return "success"
    if answer.refused:
        return "refused"
    if answer.timed_out:
        return "timeout"
    return "gone" if answer.status == GONE else "failed"


def owner_name() -> str:
    """This process's name on the leases it holds (each claim adds `/<n>`): host, pid and a
    random part (a pid is reused after a restart, and two hosts may have the same)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"


class Deliverer:
    """One process's delivery loop over one store."""

    def __init__(self, db: Database, settings: Settings, parent: int | None = None) -> None:
        self.db = db
        self.settings = settings
        self.owner = owner_name()
        self.parent = parent
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.busy: set[int] = set()
        self.lock = threading.Lock()
        self.claims = itertools.count(1)

    def stop(self) -> None:
        """Ask the loop to end: no new attempt starts; those in flight finish and are recorded."""
        self.stopping.set()
        self.wake.set()

    def run(self) -> None:
        """Deliver until stopped (or the parent process is gone); then free every lease."""
        log.info("%s %s", RUNNING, self.owner)
        with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="webhook") as pool:
            while not self._should_stop():
                self.wake.clear()
                holder, claimed = self._claim()
                for endpoint_id in claimed:
                    pool.submit(self._serve, endpoint_id, holder)
                if not claimed:
                    self.wake.wait(self.settings.poll_interval)
        self._release()

    def _should_stop(self) -> bool:
        if self.parent is not None and os.getppid() != self.parent:
            log.warning("webhook delivery: the serving process is gone; stopping")
            self.stopping.set()
        return self.stopping.is_set()

    def _claim(self) -> tuple[str, list[int]]:
        """Lease as many due endpoints as there are free threads (none being served here); the
        claim's holder name and the endpoints' ids."""
        holder = f"{self.owner}/{next(self.claims)}"
        with self.lock:
            busy = set(self.busy)
        if len(busy) >= CONCURRENCY:
            return holder, []
        now, free = utcnow(), CONCURRENCY - len(busy)
        try:
            with self.db.read() as conn:
                if not leases.any_due(conn, now, busy):
                    return holder, []
            with self.db.write() as conn:
                until = now + self.settings.lease
                claimed = leases.claim(conn, holder, now, until, free, busy)
        except ServiceError as error:
            log.warning("webhook delivery: cannot lease endpoints: %s", error.message)
            return holder, []
        with self.lock:
            self.busy.update(claimed)
        return holder, claimed

    def _serve(self, endpoint_id: int, holder: str) -> None:
        """Send the leased endpoint's events in order while they succeed (at most BATCH), then
        free the lease; a store failure leaves it to run out."""
        try:
            sent = 0
            while sent < BATCH and not self.stopping.is_set():
                with self.db.read() as conn:
                    found = leases.head(conn, endpoint_id, holder, AHEAD)
                if found is None or not found[1]:
                    break  # nothing to send, or no longer this claim's
                endpoint, queued = found
                done = self._send_in_order(endpoint, queued, holder)
                sent += done
                if done < len(queued):
                    break
            with self.db.write() as conn:
                leases.release(conn, holder, endpoint_id)
        except ServiceError as error:
            log.warning("webhook delivery to endpoint %s: store failed: %s", endpoint_id, error)
        except Exception:
            log.exception("webhook delivery to endpoint %s failed", endpoint_id)
        finally:
            with self.lock:
                self.busy.discard(endpoint_id)
            self.wake.set()

    def _send_in_order(
        self, endpoint: endpoints.Stored, queued: list[Row[Any]], holder: str
    ) -> int:
        """Send the events one after the other while each succeeds; how many did. Each outcome
        is recorded before the next is sent, and only while the claim still holds the lease."""
        attempts, lease_until = endpoint.attempts, endpoint.lease_until
        for done, event in enumerate(queued):
            now = utcnow()
            if self.stopping.is_set() or lease_until - now < timedelta(
                seconds=self.settings.timeout
            ):
                return done  # too little lease left for a whole attempt: claimed anew later
            entry = events.entry(event)
            started = time.perf_counter()
            answer = self._post(endpoint, entry, now)
            seconds = time.perf_counter() - started
            change = outcome(self.settings, answer, attempts, entry.id, event.at)
            with self.db.write() as conn:
                applied = leases.record(conn, endpoint.id, holder, event.seq, change)
            self._report(endpoint, entry, answer, attempts + 1, seconds, applied)
            if not (applied and change.delivered and change.lease_until):
                return done
            attempts, lease_until = 0, change.lease_until
        return len(queued)

    def _post(
        self, endpoint: endpoints.Stored, entry: events.Entry, now: datetime
    ) -> transport.Answer:
        """One attempt: the event's body, signed now with the endpoint's secrets, POSTed."""
        payload = message.body(entry)
        signing = endpoints.signing_secrets(endpoint, now)
        return transport.post(
            endpoint.url,
            payload,
            message.headers(entry, payload, signing, now),
            timeout=self.settings.timeout,
            allow_private=self.settings.allow_private,
        )

    def _report(
        self,
        endpoint: endpoints.Stored,
        entry: events.Entry,
        answer: transport.Answer,
        attempt: int,
        seconds: float,
        applied: bool,
    ) -> None:
        """The attempt's metrics and its line in the service log."""
        ended = result(answer)
        error = answer.error
        if not applied:
            error = f"{error}; " if error else ""
            error += "the lease was lost meanwhile: outcome not recorded"
        lag = (utcnow() - entry.at).total_seconds() if answer.ok else None
        metrics.record_delivery(ended, lag)
        decision_log.record_delivery(
            tenant=endpoint.tenant,
            endpoint_id=endpoint.id,
            event_id=entry.id,
            attempt=attempt,
            result=ended,
            status=answer.status,
            error=error,
            seconds=seconds,
        )

    def _release(self) -> None:
        try:
            with self.db.write() as conn:
                leases.release_all(conn, self.owner)
        except ServiceError as error:
            log.warning("webhook delivery: leases not freed (they run out): %s", error.message)


def deliver(config: Mapping[str, Any], parent: int | None = None) -> None:
    """Run the loop on the configured store until SIGTERM or SIGINT (`workflow-authz deliver`):
    the attempts in flight finish and are recorded, the leases are freed."""
    db = Database(config["DATABASE_URL"], CONCURRENCY + 1, config["STORE_TIMEOUT"])
    deliverer = Deliverer(db, Settings.of(config), parent)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: deliverer.stop())
    try:
        deliverer.run()
    finally:
        db.dispose()


@contextmanager
def alongside(config: Mapping[str, Any]) -> Iterator[None]:
    """While the block runs (`serve`), the delivery loop runs as one process of its own beside
    it, when WEBHOOK_DELIVERY is on: started again if it ends (a crash, a kill), stopped
    (SIGTERM, then SIGKILL after its grace) on exit. It reads its settings from the same
    environment as the server (serve's own come from there).

    A process, not a thread of the server: it shares no interpreter with the workers, and it
    writes its metrics into the same PROMETHEUS_MULTIPROC_DIR, so /metrics sums them."""
    if not config["WEBHOOK_DELIVERY"]:
        yield
        return
    keeper = _Keeper(config["WEBHOOK_TIMEOUT"] + LEASE_MARGIN)
    thread = threading.Thread(target=keeper.run, name="webhook-delivery-keeper", daemon=True)
    thread.start()
    try:
        yield
    finally:
        keeper.stop()
        thread.join()


class _Keeper:
    """Keeps one `workflow-authz deliver` process running until stopped."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.stopping = threading.Event()
        self.argv = [sys.executable, "-m", "service.cli", "deliver", "--parent", str(os.getpid())]

    def run(self) -> None:
        while not self.stopping.is_set():
            process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL)
            while process.poll() is None and not self.stopping.wait(KEEPER_POLL):
                pass
            if self.stopping.is_set():
                _stop(process, self.grace)
                return
            log.warning(
                "webhook delivery process ended (%s); starting another in %g s",
                process.returncode,
                RESTART_DELAY,
            )
            self.stopping.wait(RESTART_DELAY)

    def stop(self) -> None:
        self.stopping.set()


def _stop(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, wait for the attempts in flight, SIGKILL if it will not end."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()
