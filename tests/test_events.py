"""The external-systems feed (service/events.py), on SQLite and PostgreSQL: every change that makes
an assessment newly visible or no longer visible to the feed's audience, in order, with a cursor
that never misses or repeats an event; and the history, feed and audit are append-only."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask

from service import policy_changes
from service.db import Database
from service.policies import PolicyEngine
from service.policies.store import tenant_cells
from tests.conftest import Api, complete

REOPEN = {"role": "headteacher", "actor": "head", "reason": "marks entered for the wrong class"}


def _feed(api: Api, after: str | None = None, limit: int = 100) -> Any:
    query = f"?limit={limit}" + (f"&after={after}" if after else "")
    return api.get(f"/events{query}").json


def test_the_feed_reports_transitions_that_change_external_visibility(api: Api) -> None:
    complete(api, "f1")
    api.post("/assessments/f1/reopen", REOPEN)
    page = _feed(api)
    assert [(e["assessment"], e["phase"], e["visible"], e["cause"]) for e in page["events"]] == [
        ("f1", "completed", True, "transition"),
        ("f1", "organisation_approval", False, "transition"),
    ]
    assert _feed(api, page["cursor"])["events"] == []


def test_a_policy_change_yields_one_event_per_affected_assessment(
    api: Api, db: Database, policy_engine: PolicyEngine
) -> None:
    for assessment in ("p1", "p2"):
        api.post("/assessments", {"id": assessment, "area": "behaviour"})
        api.post(f"/assessments/{assessment}/advance", {"role": "mentor", "actor": "m"})
    api.post("/assessments", {"id": "p3", "area": "behaviour"})  # still in group_registration
    cursor = _feed(api)["cursor"]
    with db.write() as conn:
        cells = set(tenant_cells(conn, "default")) | {
            ("external_system", "behaviour", "organisation_approval", "view")
        }
        policy_changes.save(conn, policy_engine, "default", cells, actor="ada")
    events = _feed(api, cursor)["events"]
    assert [(e["assessment"], e["visible"], e["cause"], e["policy_version"]) for e in events] == [
        ("p1", True, "policy", 2),
        ("p2", True, "policy", 2),
    ]


def test_the_cursor_pages_without_gaps_or_repeats_and_is_bound_to_its_tenant(api: Api) -> None:
    for i in range(5):
        complete(api, f"c{i}")
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = _feed(api, cursor, limit=2)
        seen += [e["assessment"] for e in page["events"]]
        cursor = page["cursor"]
    assert seen == [f"c{i}" for i in range(5)]
    bad = api.get(f"/events?after={cursor}x")
    assert bad.status_code == 400 and bad.json["error"]["field"] == "after"
    assert api.get("/events?limit=0").json["error"]["field"] == "limit"


def test_the_feed_read_during_concurrent_transitions_misses_nothing(
    app: Flask, api: Api, store_url: str
) -> None:
    """Writers in two service instances (each with its own pool, as two processes have) and a
    reader in a third poll the same store at once."""
    from service import create_app

    instances = [app, create_app({"DATABASE_URL": store_url, "TESTING": True})]
    reader_app = create_app({"DATABASE_URL": store_url, "TESTING": True})
    ids = [f"k{i}" for i in range(12)]
    for assessment in ids:
        api.post("/assessments", {"id": assessment, "area": "assessment"})
        api.post(f"/assessments/{assessment}/advance", {"role": "course_teacher", "actor": "t"})
    done = threading.Event()
    start = threading.Barrier(len(ids) + 1)

    def complete(assessment: str) -> int:
        client = Api(instances[int(assessment[1:]) % 2].test_client(), api.key)
        start.wait()
        return client.post(
            f"/assessments/{assessment}/advance", {"role": "headteacher", "actor": "h"}
        ).status_code

    def poll() -> list[str]:
        client, cursor, seen = Api(reader_app.test_client(), api.key), None, []
        start.wait()
        while True:
            finished = done.is_set()
            page = client.get("/events?limit=3" + (f"&after={cursor}" if cursor else "")).json
            seen += [e["assessment"] for e in page["events"]]
            cursor = page["cursor"]
            if finished and not page["events"]:
                return seen

    with ThreadPoolExecutor(len(ids) + 1) as pool:
        reader = pool.submit(poll)
        statuses = list(pool.map(complete, ids))
        done.set()
        seen = reader.result(timeout=60)
    for instance in (instances[1], reader_app):
        instance.extensions["workflow_authz.db"].dispose()
    assert statuses == [200] * len(ids)
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))


def test_history_feed_and_audit_are_append_only_in_the_database(
    api: Api, db: Database, policy_engine: PolicyEngine
) -> None:
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from service.errors import Unavailable

    complete(api, "h1")
    with db.write() as conn:
        policy_changes.save(conn, policy_engine, "default", set(), actor="ada", area="behaviour")
    for statement in (
        "UPDATE transitions SET actor = 'someone else'",
        "DELETE FROM transitions",
        "DELETE FROM events",
        "UPDATE policy_changes SET actor = 'x'",
    ):
        with pytest.raises((DBAPIError, Unavailable)), db.write() as conn:
            conn.execute(text(statement))
    assert len(api.get("/assessments/h1").json["history"]) == 2
