"""Tenant isolation and secrets: a key for tenant A gets 403 for every way of naming tenant B;
revoking a key takes effect on the next request in every process; keys are never stored or
logged in clear."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from service import create_app, keys, policy_changes
from service.db import Database
from service.policies import PolicyEngine
from tests.conftest import Api

QUESTION = {"role": "parent", "action": "view", "area": "behaviour", "phase": "completed"}


@pytest.fixture
def north_key(
    db: Database, policy_engine: PolicyEngine, make_key: Callable[[str | None], str]
) -> str:
    with db.write() as conn:
        policy_changes.create_tenant(
            conn, "north", [("parent", "behaviour", "completed", "view")], actor="t"
        )
    return make_key("north")


def test_a_tenant_key_is_refused_for_every_way_of_naming_another_tenant(
    api: Api, north_key: str
) -> None:
    api.post("/assessments", {"id": "d1", "area": "behaviour"})
    attempts = [
        api.post("/authorize", QUESTION | {"tenant": "default"}, key=north_key),
        api.post("/authorize", QUESTION, key=north_key),  # no tenant means default
        api.post(
            "/authorize", {"role": "parent", "action": "view", "assessment": "d1"}, key=north_key
        ),
        api.post(
            "/assessments", {"tenant": "default", "id": "n1", "area": "behaviour"}, key=north_key
        ),
        api.get("/assessments/d1?tenant=default", key=north_key),
        api.get("/assessments/d1", key=north_key),
        api.post(
            "/assessments/d1/advance",
            {"tenant": "default", "role": "mentor", "actor": "m"},
            key=north_key,
        ),
    ]
    assert [r.status_code for r in attempts] == [403] * len(attempts)
    assert all(r.json["error"]["code"] == "forbidden" and "allowed" not in r.json for r in attempts)
    batch = api.post(
        "/authorize/batch",
        {
            "requests": [
                {"id": "a", "tenant": "default", **QUESTION},
                {"id": "b", "tenant": "north", **QUESTION},
            ]
        },
        key=north_key,
    ).json["results"]
    assert batch[0]["error"]["code"] == "forbidden" and batch[1]["allowed"] is True
    assert api.get("/assessments/d1").json["version"] == 1


def test_revoking_a_key_takes_effect_on_the_next_request_in_every_process(
    app: Flask, store_url: str
) -> None:
    other_process = create_app({"DATABASE_URL": store_url, "TESTING": True})
    db: Database = app.extensions["workflow_authz.db"]
    with db.write() as conn:
        token = keys.create(conn, "to revoke", "default")
    clients = [Api(app.test_client(), token), Api(other_process.test_client(), token)]
    assert [c.post("/authorize", QUESTION).status_code for c in clients] == [200, 200]
    with db.write() as conn:
        keys.revoke(conn, token.split("_")[1])
    assert [c.post("/authorize", QUESTION).status_code for c in clients] == [401, 401]
    other_process.extensions["workflow_authz.db"].dispose()


def test_keys_are_never_stored_or_logged_in_clear(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = create_app({"DATABASE_URL": sqlite_url})
    with app.extensions["workflow_authz.db"].write() as conn:
        token = keys.create(conn, "secret holder", "default")
    api = Api(app.test_client(), token)
    api.post("/authorize", QUESTION)
    api.post("/authorize", QUESTION, key=token + "x")  # a failed attempt is logged without the key
    api.post("/assessments", {"id": "s1", "area": "behaviour"})
    app.extensions["workflow_authz.db"].dispose()
    secret = token.split("_", 2)[2]
    stored = b"".join(
        p.read_bytes()
        for p in Path(sqlite_url.removeprefix("sqlite:///")).parent.glob("store.sqlite3*")
    )
    assert secret.encode() not in stored and token.encode() not in stored
    assert secret not in caplog.text
