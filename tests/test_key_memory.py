"""A process remembers the keys it verified (keys.KnownKeys), so a decision reads one statement,
not two; the memory never answers alone: the decision's own statement confirms that the key's
row is still live. On both stores: two real `workflow-authz serve` processes that both remember
a key answer 401 to the very next request after `workflow-authz keys revoke`, whatever the
request; in one process, a revoked key's refusal is 401 even where its body, tenant or
assessment would have earned another error, each counted as a failed authentication; and a
decision under a remembered key runs exactly one statement."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import event

from bench.server import REPO_ROOT, Server, api_headers, server_env, serving, wait_ready
from service import keys
from service.db import Database
from tests.conftest import Api

QUESTION = {"role": "parent", "action": "view", "area": "behaviour", "phase": "completed"}
BATCH = {"requests": [{"id": "q", **QUESTION}]}
PLACE = {"role": "parent", "area": "behaviour", "phase": "completed"}


def _cli(url: str, *args: str) -> str:
    """Run `workflow-authz ...` in a process of its own on the store; its output."""
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=REPO_ROOT,
        env=server_env(url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _status(server: Server, path: str, body: Any, token: str) -> int:
    return server.post_json(path, body, token).status


@pytest.fixture
def two_servers(store_url: str) -> Iterator[tuple[Server, Server]]:
    with serving(store_url, workers=1, wait=False) as a, serving(store_url, workers=1) as b:
        wait_ready(a)
        yield a, b


def test_a_cli_revoke_governs_the_very_next_request_of_every_process(
    store_url: str, two_servers: tuple[Server, Server]
) -> None:
    output = _cli(store_url, "keys", "create", "--tenant", "default", "--name", "remembered")
    token = output.strip()
    for server in two_servers:  # the first request verifies the key; the next ones remember it
        for path, body in (("/authorize", QUESTION), ("/authorize/batch", BATCH)):
            assert [_status(server, path, body, token) for _ in range(3)] == [200] * 3
    _cli(store_url, "keys", "revoke", token.split("_")[1])
    for server in two_servers:
        assert _status(server, "/authorize", QUESTION, token) == 401
        assert _status(server, "/authorize/batch", BATCH, token) == 401
        assert _status(server, "/permissions", PLACE, token) == 401
        reply = server.request("POST", "/authorize", b"{", api_headers(token))
        assert reply.status == 401 and reply.json()["error"]["code"] == "unauthorized"


@pytest.fixture
def remembered(api: Api, db: Database) -> Api:
    """A client whose key the app verified and remembers, already revoked in the store."""
    assert api.post("/assessments", {"id": "a1", "area": "behaviour"}).status_code == 201
    assert api.post("/authorize", QUESTION).status_code == 200
    assert api.post("/authorize", QUESTION).status_code == 200  # from memory, confirmed
    with db.write() as conn:
        keys.revoke(conn, api.key.split("_")[1])
    return api


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/authorize", QUESTION),
        ("/authorize", {"role": "parent", "action": "view", "assessment": "a1"}),  # found
        ("/authorize", {"role": "parent", "action": "view", "assessment": "none"}),  # 404
        ("/authorize", QUESTION | {"tenant": "nowhere"}),  # 404 unknown tenant
        ("/authorize", QUESTION | {"role": "nobody"}),  # 400 unknown role
        ("/authorize", {"role": "parent"}),  # 400 invalid body
        ("/authorize/batch", {"requests": [{"id": "x", "role": "nobody"}]}),  # no statement
        ("/authorize/batch", BATCH),
        ("/permissions", PLACE),
    ],
)
def test_a_revoked_remembered_key_is_refused_whatever_else_the_request_would_earn(
    remembered: Api, path: str, body: Any
) -> None:
    response = remembered.post(path, body)
    assert response.status_code == 401, response.json
    assert response.json["error"]["code"] == "unauthorized"
    again = remembered.post("/authorize", QUESTION)  # forgotten: read and refused as any key
    assert again.status_code == 401


def test_a_revoked_key_of_another_tenant_is_refused_not_forbidden(
    app: Flask, db: Database, make_key: Callable[[str | None], str]
) -> None:
    north = Api(app.test_client(), make_key("north"))
    asked = QUESTION | {"tenant": "default"}
    assert [north.post("/authorize", asked).status_code for _ in range(2)] == [403, 403]
    with db.write() as conn:
        keys.revoke(conn, north.key.split("_")[1])
    assert north.post("/authorize", asked).status_code == 401


def test_failures_under_a_revoked_remembered_key_reach_the_throttle(remembered: Api) -> None:
    statuses = [remembered.post("/authorize", QUESTION).status_code for _ in range(21)]
    assert statuses == [401] * 20 + [429]  # the first, refused from memory, counts too


@contextmanager
def sent_statements(db: Database) -> Iterator[list[str]]:
    """Every statement the driver sends to the store from the read pool while the block runs,
    as the driver itself reports it: SQLite's trace callback; libpq's protocol trace on
    PostgreSQL (each Execute or simple Query a client sends; with the statement it binds)."""
    sent: list[str] = []
    traces: list[tuple[Any, IO[bytes]]] = []

    def checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.set_trace_callback(sent.append)
        elif not any(conn is dbapi_conn for conn, _ in traces):
            out = tempfile.TemporaryFile()
            dbapi_conn.pgconn.trace(out.fileno())
            dbapi_conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
            traces.append((dbapi_conn, out))

    event.listen(db.reader, "checkout", checkout)
    try:
        yield sent
    finally:
        event.remove(db.reader, "checkout", checkout)
        db.reader.dispose()  # no traced connection is handed out again
        for conn, out in traces:
            conn.pgconn.untrace()
            out.seek(0)
            lines = out.read().decode().splitlines()
            out.close()
            bound = ""
            for line in lines:
                fields = line.split("\t")
                if fields[0] == "F" and fields[2] == "Bind":
                    bound = fields[3].strip()
                if fields[0] == "F" and fields[2] in ("Execute", "Query"):
                    sent.append(bound if fields[2] == "Execute" else fields[3])


def test_a_decision_under_a_remembered_key_sends_one_statement(api: Api, db: Database) -> None:
    api.post("/assessments", {"id": "a1", "area": "behaviour"})
    for body in ({"role": "parent", "action": "view", "assessment": "a1"}, QUESTION):
        for _ in range(6):  # verifies the key, loads the policy; the driver prepares
            assert api.post("/authorize", body).status_code == 200
        with sent_statements(db) as sent:
            assert api.post("/authorize", body).status_code == 200
        assert len(sent) == 1, sent
        if db.url.get_backend_name() == "postgresql":  # bound to a prepared statement
            assert sent[0].startswith('"" "_pg3_'), sent
