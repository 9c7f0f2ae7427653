"""Webhook delivery on both stores, to a real HTTP receiver on loopback, by the real loop
(service.webhooks.delivery.Deliverer) running in a thread of the test process: what is sent
and how it is signed, order, retries with backoff, timeouts (a slow and a trickling receiver),
410, the maximum age and `retry`, secret rotation, the address rule at delivery time, one slow
endpoint beside fast ones, the outbox's transaction, metrics and the log line."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from bench.receiver import Plan, receiving, wait_until
from bench.server import free_port
from service import events, metrics
from service.db import Database
from service.models import Assessment, Event, WebhookEndpoint, utcnow
from service.webhooks import endpoints, leases
from service.webhooks.delivery import CONCURRENCY, Deliverer, Settings, backoff
from tests.conftest import Api

WAIT = 30.0
QUICK = Settings(
    timeout=1.0,
    backoff_base=0.02,
    backoff_cap=0.1,
    max_age=3600.0,
    poll_interval=0.02,
    allow_private=True,
)


@pytest.fixture
def store(store_url: str) -> Iterator[Database]:
    """The test's store, with a pool large enough for the loop's threads."""
    database = Database(store_url, CONCURRENCY + 1)
    yield database
    database.dispose()


@contextmanager
def delivering(db: Database, settings: Settings = QUICK) -> Iterator[Deliverer]:
    """The delivery loop running in a thread until the block ends (then stopped and joined)."""
    deliverer = Deliverer(db, settings)
    thread = threading.Thread(target=deliverer.run)
    thread.start()
    try:
        yield deliverer
    finally:
        deliverer.stop()
        thread.join(WAIT)
        assert not thread.is_alive()


def add(db: Database, url: str) -> tuple[int, str]:
    with db.write() as conn:
        return endpoints.add(conn, "default", url, None, allow_private=True)


def make_events(db: Database, count: int, prefix: str = "a") -> list[str]:
    """`count` feed events, each in a transaction of its own; their ids."""
    made = []
    for i in range(count):
        with db.write() as conn:
            change = events.VisibilityChange(f"{prefix}-{i}", "assessment", "completed", True)
            events.append(conn, "default", [change], cause="transition", version=1)
            seq = conn.execute(select(Event.seq).order_by(Event.seq.desc())).scalars().first()
        made.append(events.event_id("default", seq))
    return made


def endpoint(db: Database, endpoint_id: int) -> Any:
    with db.read() as conn:
        return endpoints.find(conn, endpoint_id)


def verified(secret: str, seen: Any) -> bool:
    try:
        Webhook(secret).verify(seen.body, seen.headers)
    except WebhookVerificationError:
        return False
    return True


def planned(plans: dict[int, Plan]) -> Callable[[str, int], Plan]:
    """Answer the n-th request (0-based) as planned, every other one 200."""
    return lambda _path, before: plans.get(before, Plan())


def test_body_is_the_feed_entry_signed_per_the_standard(store: Database, api: Api) -> None:
    with receiving() as receiver:
        endpoint_id, secret = add(store, receiver.url())
        made = make_events(store, 2)
        with delivering(store):
            wait_until(lambda: len(receiver.at()) == 2, WAIT, "two deliveries")
    feed = api.get("/events").get_json()["events"][-2:]
    for seen, shown, event_id in zip(receiver.at(), feed, made, strict=True):
        assert json.loads(seen.body) == {
            "type": "assessment.visibility",
            "timestamp": shown["at"],
            "data": shown,
        }
        assert seen.headers["webhook-id"] == shown["id"] == event_id
        assert seen.headers["webhook-timestamp"].isdigit()
        assert seen.headers["content-type"] == "application/json"
        assert seen.headers["user-agent"].startswith("workflow-authz")
        assert Webhook(secret).verify(seen.body, seen.headers) == json.loads(seen.body)
    assert not verified(endpoints.new_secret(), receiver.at()[0])
    done = endpoint(store, endpoint_id)
    assert (done.attempts, done.last_status, done.lease_owner) == (0, 200, None)
    assert done.last_success_at is not None


def test_receiver_down_then_up_gets_everything_in_order(store: Database) -> None:
    port = free_port()
    endpoint_id, secret = add(store, f"http://127.0.0.1:{port}/hook")
    made = make_events(store, 5)
    with delivering(store):
        wait_until(lambda: endpoint(store, endpoint_id).attempts >= 2, WAIT, "failed attempts")
        down = endpoint(store, endpoint_id)
        assert down.delivered_seq == 0 and down.last_status is None
        assert "Connection" in down.last_error  # refused: nothing listens
        with receiving(port=port) as receiver:
            wait_until(lambda: len(receiver.at()) >= 5, WAIT, "five deliveries")
    assert receiver.ids() == made
    assert all(verified(secret, seen) for seen in receiver.at())
    assert endpoint(store, endpoint_id).attempts == 0


def test_500s_are_retried_with_the_same_id_until_200(store: Database) -> None:
    plans = {n: Plan(500) for n in range(3)}
    with receiving(planned(plans)) as receiver:
        endpoint_id, _ = add(store, receiver.url())
        made = make_events(store, 3)
        with delivering(store):
            wait_until(lambda: len(receiver.at()) == 6, WAIT, "three failures and three events")
    assert receiver.ids() == [made[0]] * 4 + made[1:]
    stamps = [int(seen.headers["webhook-timestamp"]) for seen in receiver.at()]
    assert stamps == sorted(stamps)  # each attempt signs its own time
    done = endpoint(store, endpoint_id)
    assert (done.attempts, done.state, done.last_error) == (0, "active", None)


@pytest.mark.parametrize(
    "slow",
    [Plan(delay=3.0), Plan(trickle=0.05, headers=(("x-padding", "x" * 2000),))],
    ids=["delay", "trickle"],
)
def test_an_answer_past_the_timeout_fails_and_is_retried(store: Database, slow: Plan) -> None:
    """A receiver slower than the timeout, or one trickling its answer a byte at a time (each
    read well within the timeout, the whole answer in 100 s, past the test's wait unless the
    deadline cuts it off): failed, then sent again."""
    with receiving(planned({0: slow})) as receiver:
        endpoint_id, _ = add(store, receiver.url())
        made = make_events(store, 1)
        with delivering(store):
            wait_until(lambda: endpoint(store, endpoint_id).attempts == 1, WAIT, "a timeout")
            assert endpoint(store, endpoint_id).last_error == "no answer within the timeout"
            wait_until(lambda: endpoint(store, endpoint_id).delivered_seq == 1, WAIT, "a retry")
    assert receiver.ids() == made * 2


def test_410_disables_the_endpoint_at_once(store: Database) -> None:
    with receiving(planned({0: Plan(410)})) as receiver:
        endpoint_id, _ = add(store, receiver.url())
        made = make_events(store, 3)
        with delivering(store):
            wait_until(lambda: endpoint(store, endpoint_id).state == "disabled", WAIT, "410")
            make_events(store, 1, prefix="later")
            with store.write() as conn:  # what the loop would lease now: nothing
                assert leases.claim(conn, "probe", utcnow(), utcnow(), 10) == []
        gone = endpoint(store, endpoint_id)
    assert receiver.ids() == made[:1]
    assert gone.delivered_seq == 0 and gone.last_status == 410
    assert "410 Gone" in gone.state_reason


def test_max_age_makes_it_failing_and_retry_resumes_in_order(store: Database) -> None:
    aged = replace(QUICK, max_age=0.0)
    failing = {"on": True}
    with receiving(lambda _p, _n: Plan(503 if failing["on"] else 200)) as receiver:
        endpoint_id, _ = add(store, receiver.url())
        made = make_events(store, 3)
        with delivering(store, aged):
            wait_until(lambda: endpoint(store, endpoint_id).state == "failing", WAIT, "failing")
            kept = endpoint(store, endpoint_id)
            assert kept.delivered_seq == 0 and made[0] in kept.state_reason
            assert receiver.ids() == made[:1]  # given up after one attempt: nothing after it
            failing["on"] = False
            with store.write() as conn:
                endpoints.retry(conn, endpoint_id)
            wait_until(lambda: len(receiver.at()) == 4, WAIT, "the kept events")
    assert receiver.ids() == made[:1] + made
    assert endpoint(store, endpoint_id).state == "active"


def test_both_secrets_sign_during_the_grace_only_the_new_one_after(store: Database) -> None:
    with receiving() as receiver:
        endpoint_id, old = add(store, receiver.url())
        with store.write() as conn:
            new = endpoints.rotate_secret(conn, endpoint_id, timedelta(seconds=3))
        until = endpoint(store, endpoint_id).previous_secret_until
        with delivering(store):
            make_events(store, 1, prefix="during")
            wait_until(lambda: len(receiver.at()) == 1, WAIT, "a delivery in the grace")
            wait_until(lambda: utcnow() > until, WAIT, "the grace to end")
            make_events(store, 1, prefix="after")
            wait_until(lambda: len(receiver.at()) == 2, WAIT, "a delivery after it")
    during, after = receiver.at()
    assert int(during.headers["webhook-timestamp"]) < until.timestamp()
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert verified(old, during) and verified(new, during)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert verified(new, after) and not verified(old, after)


def test_a_name_resolving_to_loopback_is_refused_at_delivery(store: Database) -> None:
    """Added while private addresses were allowed; delivered to with them refused: `localhost`
    resolves to loopback now, so nothing is sent."""
    refusing = replace(QUICK, allow_private=False)
    with receiving() as receiver:
        endpoint_id, _ = add(store, f"http://localhost:{receiver.port}/hook")
        make_events(store, 1)
        before = metrics.DELIVERIES.labels("refused")._value.get()
        with delivering(store, refusing):
            wait_until(lambda: endpoint(store, endpoint_id).attempts >= 1, WAIT, "an attempt")
        refused = endpoint(store, endpoint_id)
    assert receiver.at() == []
    assert "private address" in refused.last_error and refused.delivered_seq == 0
    assert metrics.DELIVERIES.labels("refused")._value.get() > before


def test_a_change_rolled_back_sends_nothing(store: Database) -> None:
    """The event is written in the transaction of its change: rolled back together."""
    with receiving() as receiver:
        add(store, receiver.url())
        with pytest.raises(RuntimeError), store.write() as conn:
            conn.execute(
                Assessment.__table__.insert().values(
                    tenant="default",
                    id="rolled-back",
                    area="assessment",
                    phase="completed",
                    version=1,
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
            )
            change = events.VisibilityChange("rolled-back", "assessment", "completed", True)
            events.append(conn, "default", [change], cause="created", version=1)
            raise RuntimeError("the change fails after its event was written")
        made = make_events(store, 1, prefix="kept")
        with delivering(store):
            wait_until(lambda: len(receiver.at()) == 1, WAIT, "the kept event")
    assert receiver.ids() == made
    assert json.loads(receiver.at()[0].body)["data"]["assessment"] == "kept-0"


def test_a_slow_endpoint_does_not_stall_the_others(store: Database) -> None:
    """The slow receiver holds its first answer until every fast endpoint has all its events
    (or the test's wait ends): a loop that served endpoints one after another would never get
    that far."""
    slow_path, released = "/slow", threading.Event()
    held = Plan(delay=WAIT, hold=released)
    answer = lambda path, n: held if path == slow_path and n == 0 else Plan()  # noqa: E731
    fast = [f"/fast{i}" for i in range(3)]
    with receiving(answer) as receiver:
        add(store, receiver.url(slow_path))
        for path in fast:
            add(store, receiver.url(path))
        made = make_events(store, 4)
        with delivering(store, replace(QUICK, timeout=WAIT + 5)):
            try:
                wait_until(lambda: len(receiver.at(slow_path)) == 1, WAIT, "the slow one")
                everything = lambda: all(receiver.ids(p) == made for p in fast)  # noqa: E731
                wait_until(everything, WAIT, "the fast endpoints' events")
                assert len(receiver.at(slow_path)) == 1  # still held
            finally:
                released.set()
            wait_until(lambda: len(receiver.at(slow_path)) == 4, WAIT, "the slow endpoint's")
    assert receiver.ids(slow_path) == made and receiver.overlaps == 0


def test_a_redirect_is_not_followed(store: Database) -> None:
    with (
        receiving() as target,
        receiving(planned({0: Plan(307, headers=(("location", target.url()),))})) as receiver,
    ):
        endpoint_id, _ = add(store, receiver.url())
        make_events(store, 1)
        with delivering(store):
            wait_until(lambda: endpoint(store, endpoint_id).delivered_seq == 1, WAIT, "a retry")
    assert target.at() == [] and len(receiver.at()) == 2


def test_each_attempt_is_counted_and_logged(
    store: Database, caplog: pytest.LogCaptureFixture
) -> None:
    success = metrics.DELIVERIES.labels("success")._value.get()
    failed = metrics.DELIVERIES.labels("failed")._value.get()
    lags = _lag_count()
    with receiving(planned({0: Plan(500)})) as receiver, caplog.at_level(logging.INFO):
        endpoint_id, _ = add(store, receiver.url())
        (made,) = make_events(store, 1)
        with delivering(store):
            wait_until(lambda: endpoint(store, endpoint_id).delivered_seq == 1, WAIT, "success")
    assert metrics.DELIVERIES.labels("success")._value.get() == success + 1
    assert metrics.DELIVERIES.labels("failed")._value.get() == failed + 1
    assert _lag_count() == lags + 1
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if "webhook_delivery" in r.getMessage()
    ]
    assert [
        (x["event_id"], x["endpoint_id"], x["attempt"], x["status"], x["result"]) for x in lines
    ] == [
        (made, endpoint_id, 1, 500, "failed"),
        (made, endpoint_id, 2, 200, "success"),
    ]
    assert lines[0]["error"] == "answered 500" and lines[1]["error"] is None
    assert all(x["duration_ms"] >= 0 and x["tenant"] == "default" for x in lines)


def _lag_count() -> float:
    for family in metrics.DELIVERY_LAG.collect():
        for sample in family.samples:
            if sample.name.endswith("_count"):
                return float(sample.value)
    raise AssertionError("no lag count")


def test_the_backlog_by_state_is_read_from_the_store(store: Database, api: Api) -> None:
    with receiving() as receiver:
        add(store, receiver.url())
        gone, _ = add(store, receiver.url("/gone"))
        with store.write() as conn:
            conn.execute(
                WebhookEndpoint.__table__.update()
                .where(WebhookEndpoint.id == gone)
                .values(state="disabled")
            )
        make_events(store, 3)
    with store.read() as conn:
        assert leases.backlog(conn) == {"active": (1, 3), "failing": (0, 0), "disabled": (1, 3)}
    text = api.client.get("/metrics").get_data(as_text=True)
    assert 'workflow_authz_webhook_backlog_events{state="active"} 3.0' in text
    assert 'workflow_authz_webhook_endpoints{state="disabled"} 1.0' in text


def test_backoff_doubles_to_the_cap_with_jitter_in_its_upper_half() -> None:
    settings = replace(QUICK, backoff_base=1.0, backoff_cap=60.0)
    assert [backoff(settings, n, 0.999999) for n in (1, 2, 3, 7, 8, 100)] == pytest.approx(
        [1.0, 2.0, 4.0, 60.0, 60.0, 60.0], rel=1e-5
    )
    assert [backoff(settings, n, 0.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
