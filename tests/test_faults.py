"""Fail closed: when the store cannot be read the answer is 503, never an allow -- even for a
question this process answered a moment ago from its policy cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from service import create_app
from tests.conftest import PG_ADMIN_URL, Api

QUESTION = {"role": "parent", "action": "view", "area": "behaviour", "phase": "completed"}


def _assert_unavailable(response: Any) -> None:
    assert response.status_code == 503
    assert response.json["error"]["code"] == "unavailable"
    assert "allowed" not in response.json
    assert "Traceback" not in response.get_data(as_text=True)


def _break_sqlite(url: str, app: Any) -> None:
    """Make the SQLite store unreadable: the file is gone and a folder stands in its place."""
    app.extensions["workflow_authz.db"].dispose()
    path = Path(url.removeprefix("sqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.mkdir(path)


def test_sqlite_store_unreadable_gives_503(sqlite_url: str) -> None:
    app = create_app({"DATABASE_URL": sqlite_url})
    from service import keys

    with app.extensions["workflow_authz.db"].write() as conn:
        key = keys.create(conn, "k", "default")
    api = Api(app.test_client(), key)
    assert api.post("/authorize", QUESTION).json["allowed"] is True
    _break_sqlite(sqlite_url, app)
    _assert_unavailable(api.post("/authorize", QUESTION))
    _assert_unavailable(api.post("/authorize/batch", {"requests": [{"id": "1", **QUESTION}]}))
    _assert_unavailable(api.get("/healthz"))
    shutil.rmtree(sqlite_url.removeprefix("sqlite:///"))


@pytest.mark.postgres
def test_postgres_store_gone_gives_503_and_recovers(pg_url: str) -> None:
    app = create_app({"DATABASE_URL": pg_url, "TESTING": True})
    from service import keys

    with app.extensions["workflow_authz.db"].write() as conn:
        key = keys.create(conn, "k", "default")
    api = Api(app.test_client(), key)
    assert api.post("/authorize", QUESTION).json["allowed"] is True
    name = pg_url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
        conn.execute(
            text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        )
    _assert_unavailable(api.post("/authorize", QUESTION))
    _assert_unavailable(api.post("/assessments", {"id": "x", "area": "behaviour"}))
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
    admin.dispose()
    assert api.post("/authorize", QUESTION).json["allowed"] is True
    app.extensions["workflow_authz.db"].dispose()


def test_unreachable_postgres_url_gives_503() -> None:
    app = create_app(
        {"DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none", "TESTING": True}
    )
    _assert_unavailable(
        app.test_client().post(
            "/authorize", json=QUESTION, headers={"Authorization": "Bearer wa_x_y"}
        )
    )
    _assert_unavailable(app.test_client().get("/healthz"))
