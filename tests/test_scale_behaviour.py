"""With 10,000 tenants (~445,000 policy rows) in the store a process reads the policy of exactly the
tenants it decides for: nothing at start, one query per tenant on first use that touches only that
tenant's rows, none on a cache hit, one again after that tenant's version changed, and it keeps at
most its configured number of tenants, least recently used going first. Behaviour, not timing:
the queries reaching `casbin_rule` are counted with a SQLAlchemy event listener."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event

from bench.store import Content, populate
from service import create_app, keys, policy_changes
from service.config import load_config
from service.db import Database
from service.policies import PolicyEngine
from service.policies.store import current_version, tenant_cells
from service.workflows import load_workflow

TENANTS = 10_000


@dataclass(frozen=True)
class BigStore:
    """A SQLite store holding `default` plus 10,000 generated tenants, and an all-tenant key."""

    url: str
    content: Content
    key: str


@pytest.fixture(scope="module")
def big_template(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> BigStore:
    """Populated once per module from the session's migrated template (a few seconds)."""
    path = tmp_path_factory.mktemp("big") / "big.sqlite3"
    shutil.copy(sqlite_template, path)
    workflow = load_workflow(Path(load_config()["POLICY_DIR"]) / "workflow.toml")
    content = Content(workflow, TENANTS, assessments_per_tenant=1)
    db = Database(f"sqlite:///{path}", 1)
    try:
        with db.write() as conn:
            populate(conn, content)
            key = keys.create(conn, "scale test", None)
    finally:
        db.dispose()
    return BigStore(f"sqlite:///{path}", content, key)


@pytest.fixture
def big(big_template: BigStore, tmp_path: Path) -> BigStore:
    """A private copy, so a test that writes leaves the others' store as generated."""
    path = tmp_path / "big.sqlite3"
    shutil.copy(big_template.url.removeprefix("sqlite:///"), path)
    return BigStore(f"sqlite:///{path}", big_template.content, big_template.key)


class RuleQueries:
    """Every statement this app's engine sends that reads `casbin_rule`, with its parameters."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[tuple[str, Any]] = []
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "casbin_rule" in statement:
            self.seen.append((statement, parameters))

    def take(self) -> list[tuple[str, Any]]:
        """The statements seen since the last call."""
        seen, self.seen = self.seen, []
        return seen

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)


@dataclass
class Process:
    """One service process's app, its policy engine, a client and the rule-query counter."""

    app: Flask
    engine: PolicyEngine
    client: FlaskClient
    queries: RuleQueries
    store: BigStore

    def ask(self, index: int) -> dict[str, Any]:
        """POST /authorize about tenant `index`'s assessment; the JSON answer."""
        found = self.store.content.assessments(index)[0]
        body = {"tenant": found.tenant, "role": "parent", "action": "view", "assessment": found.id}
        reply = self.client.post(
            "/authorize", json=body, headers={"Authorization": f"Bearer {self.store.key}"}
        )
        assert reply.status_code == 200, reply.json
        answer: dict[str, Any] = reply.get_json()
        return answer

    def cells_of(self, index: int) -> set[tuple[str, str, str, str]]:
        """The cells this process decides tenant `index` by (its cached policy)."""
        tenant = self.store.content.tenant(index)
        with self.engine.db.read() as conn:
            version = current_version(conn, tenant)
        assert version is not None
        return set(self.engine.policy(tenant, version).cells)


def _process(store: BigStore, capacity: int = 2048) -> Iterator[Process]:
    app = create_app({"DATABASE_URL": store.url, "TESTING": True, "POLICY_CACHE_TENANTS": capacity})
    db: Database = app.extensions["workflow_authz.db"]
    queries = RuleQueries(db.engine)
    try:
        yield Process(
            app, app.extensions["workflow_authz.policies"], app.test_client(), queries, store
        )
    finally:
        queries.close()
        db.dispose()


@pytest.fixture
def process(big: BigStore) -> Iterator[Process]:
    yield from _process(big)


@pytest.fixture
def small_cache(big: BigStore) -> Iterator[Process]:
    yield from _process(big, capacity=3)


def _names(process: Process, *indexes: int) -> list[str]:
    return [process.store.content.tenant(i) for i in indexes]


def _reads_only(queries: list[tuple[str, Any]], tenant: str) -> None:
    """Exactly one casbin_rule query, filtered on the tenant column to `tenant` alone."""
    assert len(queries) == 1, queries
    statement, parameters = queries[0]
    assert "casbin_rule.v0 = " in statement
    values = list(parameters.values() if isinstance(parameters, dict) else parameters)
    assert tenant in values
    assert not [v for v in values if isinstance(v, str) and v.startswith("school_") and v != tenant]


def test_a_new_process_reads_no_policy_until_it_decides(process: Process) -> None:
    assert process.engine.cached_tenants() == []
    assert process.client.get("/healthz").status_code == 200
    assert process.queries.take() == []


def test_deciding_for_one_tenant_reads_only_that_tenants_rows(process: Process) -> None:
    tenant = process.store.content.tenant(4242)
    process.ask(4242)
    _reads_only(process.queries.take(), tenant)
    assert process.engine.cached_tenants() == [tenant]
    process.ask(4242)
    assert process.queries.take() == []  # a hit: the version read with the assessment matched
    assert process.cells_of(4242) == set(process.store.content.cells(4242))


def test_a_process_holds_exactly_the_tenants_it_decided_for(process: Process) -> None:
    indexes = list(range(0, TENANTS, 211))  # 48 tenants spread over the whole store
    for i in indexes:
        process.ask(i)
        _reads_only(process.queries.take(), process.store.content.tenant(i))
    assert sorted(process.engine.cached_tenants()) == sorted(_names(process, *indexes))


def test_the_cache_keeps_its_capacity_and_evicts_the_least_recently_used(
    small_cache: Process,
) -> None:
    for i in (1, 2, 3, 4, 5):
        small_cache.ask(i)
    assert small_cache.engine.cached_tenants() == _names(small_cache, 3, 4, 5)
    small_cache.queries.take()
    small_cache.ask(3)  # a hit: no read, and 3 becomes the most recently used
    assert small_cache.queries.take() == []
    assert small_cache.engine.cached_tenants() == _names(small_cache, 4, 5, 3)
    small_cache.ask(1)  # evicted before: read again, and 4 goes
    _reads_only(small_cache.queries.take(), small_cache.store.content.tenant(1))
    assert small_cache.engine.cached_tenants() == _names(small_cache, 5, 3, 1)


def test_a_version_change_elsewhere_reloads_that_tenant_only(process: Process) -> None:
    process.ask(7)
    process.ask(8)
    process.queries.take()
    tenant = process.store.content.tenant(7)
    cell = ("parent", *_area_phase(process, 7), "view")
    other = PolicyEngine.from_settings(
        Database(process.store.url, 1), load_config()
    )  # another process's writer
    try:
        with other.db.write() as conn:
            cells = set(tenant_cells(conn, tenant)) ^ {cell}
            result = policy_changes.save(conn, other, tenant, cells, actor="test")
    finally:
        other.db.dispose()
    answer = process.ask(7)
    assert (answer["allowed"], answer["policy_version"]) == (cell in cells, result.version)
    _reads_only(process.queries.take(), tenant)
    process.ask(8)
    assert process.queries.take() == []
    assert process.cells_of(7) == cells


def _area_phase(process: Process, index: int) -> tuple[str, str]:
    found = process.store.content.assessments(index)[0]
    return found.area, found.phase


def test_a_batch_about_many_tenants_finds_each_assessment_by_its_key_not_by_a_scan(
    process: Process,
) -> None:
    """A batch of 100 questions about 100 tenants' assessments reads where they are in one
    statement that looks each one up by primary key: SQLite plans a row-value IN list as a scan
    of every assessment in the store, whose cost grows with the store, not the batch."""
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM" in statement and "assessments" in statement:
            statements.append((statement, parameters))

    event.listen(process.queries.engine, "before_cursor_execute", record)
    try:
        found = [process.store.content.assessments(i)[0] for i in range(100)]
        body = {
            "requests": [
                {
                    "id": str(n),
                    "tenant": a.tenant,
                    "role": "parent",
                    "action": "view",
                    "assessment": a.id,
                }
                for n, a in enumerate(found)
            ]
        }
        reply = process.client.post(
            "/authorize/batch", json=body, headers={"Authorization": f"Bearer {process.store.key}"}
        )
    finally:
        event.remove(process.queries.engine, "before_cursor_execute", record)
    assert reply.status_code == 200
    assert all("allowed" in r for r in reply.get_json()["results"])
    (statement, parameters), *_ = statements
    with process.queries.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        plan = [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)]
    assert not [step for step in plan if step.startswith("SCAN assessments")], plan
    assert any(step.startswith("SEARCH assessments USING") for step in plan), plan
