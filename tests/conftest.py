"""Fixtures: a fresh store per test (SQLite file, or a PostgreSQL database of a random name), the
app on it, API keys and a client. Each store is copied from a template migrated once per session
and holding the default policy, so no test depends on what another left behind."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from service import create_app, keys, policy_changes
from service.cli import default_cells
from service.config import load_config
from service.db import Database
from service.policies import PolicyEngine
from service.policies.store import current_version

PG_ADMIN_URL = os.environ.get(
    "WORKFLOW_AUTHZ_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def _seed(url: str) -> None:
    """Migrate a new store and load the default policy into tenant `default`."""
    db = Database(url, 1)
    db.upgrade()
    with db.write() as conn:
        policy_changes.create_tenant(conn, "default", default_cells(), actor="test")
    db.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    _seed(f"sqlite:///{path}")
    return path


def _pg_admin() -> Any:
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database on the local PostgreSQL; mandatory in CI, skipped elsewhere."""
    admin = _pg_admin()
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server here"
        admin.dispose()
        if IN_CI:
            pytest.fail(f"CI=true but PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL} (set CI=true to require it)")
    name = f"wa_tpl_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    _seed(_pg_url(name))
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database (random name) copied from the template, dropped afterwards."""
    name = f"wa_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    yield _pg_url(name)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "store.sqlite3"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


@pytest.fixture
def app(store_url: str) -> Iterator[Flask]:
    application = create_app({"DATABASE_URL": store_url, "TESTING": True})
    yield application
    application.extensions["workflow_authz.db"].dispose()


@pytest.fixture
def db(app: Flask) -> Database:
    database: Database = app.extensions["workflow_authz.db"]
    return database


@pytest.fixture
def policy_engine(app: Flask) -> PolicyEngine:
    engine: PolicyEngine = app.extensions["workflow_authz.policies"]
    return engine


@pytest.fixture
def make_key(db: Database) -> Callable[[str | None], str]:
    """Create an API key for one tenant (or None: all tenants) and return it."""

    def make(tenant: str | None = "default") -> str:
        with db.write() as conn:
            return keys.create(conn, f"test key for {tenant or 'all'}", tenant)

    return make


class Api:
    """A test client that sends the bearer key and JSON bodies."""

    def __init__(self, client: FlaskClient, key: str) -> None:
        self.client = client
        self.key = key

    def post(self, path: str, body: Any, key: str | None = None) -> Any:
        return self.client.post(path, json=body, headers=self._auth(key))

    def get(self, path: str, key: str | None = None) -> Any:
        return self.client.get(path, headers=self._auth(key))

    def _auth(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}


@pytest.fixture
def api(app: Flask, make_key: Callable[[str | None], str]) -> Api:
    return Api(app.test_client(), make_key("default"))


@pytest.fixture
def engine(sqlite_url: str) -> PolicyEngine:
    """A policy engine of its own on a SQLite store, with room for two tenants only."""
    return PolicyEngine.from_settings(
        Database(sqlite_url), load_config() | {"POLICY_CACHE_TENANTS": 2}
    )


def policy_version(engine: PolicyEngine, tenant: str = "default") -> int:
    """The tenant's policy version in the engine's store."""
    with engine.db.read() as conn:
        version = current_version(conn, tenant)
    assert version is not None
    return version


def complete(api: Api, assessment: str, area: str = "assessment") -> None:
    """Create an assessment and walk it to its final phase by the responsible roles."""
    api.post("/assessments", {"id": assessment, "area": area})
    first = "course_teacher" if area == "assessment" else "mentor"
    for role in (first, "headteacher"):
        response = api.post(f"/assessments/{assessment}/advance", {"role": role, "actor": role})
        assert response.status_code == 200


def in_sqlite_busy_wait(pid: int) -> bool:
    """Whether a thread of process `pid` sleeps in SQLite's busy handler, waiting for a lock
    another connection holds (nanosleep; the service's runtime and idle pool threads wait in
    epoll or on futexes instead)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "wchan").read_text().strip() == "hrtimer_nanosleep":
                return True
        except OSError:
            continue
    return False
