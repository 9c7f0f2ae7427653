"""The one bench module that imports the service's internals: everything else goes through here.

The benchmarks measure the service from outside (HTTP, `workflow-authz serve`) and from inside
(decisions in this process, stores written directly). The inside part is wrapped here, so that
when the service's modules are renamed or reshaped only this file has to follow.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import flask.testing  # noqa: F401 - imported up front, so first-decision times exclude it
from flask import Flask
from sqlalchemy import Connection, Table, text

import service.admin  # noqa: F401 - idem
import service.api  # noqa: F401 - idem
from service import (
    accounts,
    assessments,
    create_app,
    events,
    keys,
    matrix,
    policy_changes,
    server,
    shapes,
)
from service.cli import default_cells as _default_cells
from service.config import REPO_ROOT, load_config
from service.config import default as config_default
from service.db import Database, store
from service.decisions import Question, Stored, decide_one
from service.errors import InvalidRequest
from service.keys import Key
from service.models import Assessment, Event, PolicyVersion
from service.policies import PolicyEngine, policy_engine
from service.policies.store import RULES, current_version, tenant_cells
from service.webhooks import endpoints, transport
from service.workflows import Area, Cell, Phase, Row, Workflow, load_workflow

__all__ = [
    "REPO_ROOT",
    "Area",
    "Cell",
    "InvalidRequest",
    "Phase",
    "Question",
    "Row",
    "Workflow",
    "config_default",
    "create_app",
    "shapes",
]

ACTOR = "bench"
RULES_TABLE: Table = RULES
VERSIONS_TABLE: Table = PolicyVersion.__table__  # type: ignore[assignment]
ASSESSMENTS_TABLE: Table = Assessment.__table__  # type: ignore[assignment]
ADMIN_USERNAME = "bench_admin"
ALL_TENANTS = Key(0, ACTOR, None)
"""The key in-process decisions are made under: valid for every tenant, as the API checks."""


def workflow() -> Workflow:
    """The configured workflow (areas, phases, roles, actions)."""
    return load_workflow(Path(load_config()["POLICY_DIR"]) / "workflow.toml")


def model_path() -> Path:
    """The configured casbin model (model.conf)."""
    return Path(load_config()["MODEL_PATH"])


def cache_capacity() -> int:
    """The policy cache size a production process uses (POLICY_CACHE_TENANTS)."""
    capacity: int = load_config()["POLICY_CACHE_TENANTS"]
    return capacity


def default_cells() -> tuple[Cell, ...]:
    """The shipped default policy's cells, sorted."""
    return tuple(sorted(_default_cells()))


def question(tenant: str, role: str, action: str, assessment: str) -> Question:
    """An in-process question about an assessment, built before it is timed."""
    return Question(tenant, role, action, assessment=assessment)


# -- stores --------------------------------------------------------------------------------------


def migrate(url: str) -> None:
    """Create the schema of an empty store with the service's migrations."""
    db = Database(url, 1)
    try:
        db.upgrade()
    finally:
        db.dispose()


@contextmanager
def writing(url: str) -> Iterator[Connection]:
    """One write transaction on the store, its connections released afterwards."""
    db = Database(url, 1)
    try:
        with db.write() as conn:
            yield conn
    finally:
        db.dispose()


def create_api_key(url: str, tenant: str | None = None) -> str:
    """A new API key in the store (None: valid for every tenant), as the CLI would make it."""
    with writing(url) as conn:
        return keys.create(conn, ACTOR, tenant)


def create_admin(url: str, tenant: str | None = None) -> tuple[str, str]:
    """A new admin account for the web form; its username and password."""
    password = secrets.token_urlsafe(16)
    with writing(url) as conn:
        accounts.create_admin(conn, ADMIN_USERNAME, tenant, password)
    return ADMIN_USERNAME, password


def form_fields(flow: Workflow, area: Area, cells: Iterable[Cell]) -> list[tuple[str, str]]:
    """The admin form's checkbox fields for one area holding exactly these cells."""
    return matrix.form_fields(flow, matrix.from_cells(area, cells))


class Local:
    """The service's store and policy engine in this process."""

    def __init__(self, db: Database, engine: PolicyEngine) -> None:
        self.db = db
        self.engine = engine

    @classmethod
    def open(cls, url: str, pool_size: int = 1, capacity: int = 16) -> Local:
        """A store and engine of our own, as the CLI builds them."""
        db = Database(url, pool_size)
        return cls(db, PolicyEngine(db, workflow(), model_path(), capacity))

    def close(self) -> None:
        """Release the store's connections."""
        self.db.dispose()

    def cell_decider(self, versions: Mapping[str, int]) -> Callable[[Row], bool]:
        """The policy decision for a 5-tuple with the tenant's version in hand."""
        engine = self.engine

        def decide(r: Row) -> bool:
            return engine.decide(*r, version=versions[r[0]]).allowed

        return decide

    def cold_cell_decider(self) -> Callable[[Row], bool]:
        """The same for a tenant that is not resident: forgotten first, so its rows are read."""
        engine = self.engine

        def decide_cold(r: Row) -> bool:
            engine.forget(r[0])
            return engine.decide(*r, version=1).allowed

        return decide_cold

    def decide(self, q: Question) -> bool:
        """One full decision as POST /authorize makes it, minus HTTP and the key check."""
        with self.db.read() as conn:
            return decide_one(Stored(conn, self.engine), ALL_TENANTS, q).decision.allowed

    def decide_cold(self, q: Question) -> bool:
        """The same for a tenant that is not resident: forgotten first, so its rows are read."""
        self.engine.forget(q.tenant)
        return self.decide(q)

    def cells(self, tenant: str, area: str) -> tuple[int | None, set[Cell]]:
        """A tenant's policy version and its cells of one area, read together."""
        with self.db.read() as conn:
            return current_version(conn, tenant), set(tenant_cells(conn, tenant, area))

    def toggle(self, tenant: str, cell: Cell, allowed: bool) -> tuple[bool, int]:
        """Read and replace a tenant's area in one write transaction, with `cell` set or not."""
        area = cell[1]
        with self.db.write() as conn:
            cells = set(tenant_cells(conn, tenant, area))
            cells = cells | {cell} if allowed else cells - {cell}
            result = policy_changes.save(conn, self.engine, tenant, cells, actor=ACTOR, area=area)
        return bool(result.changes), result.version

    def create_tenant(self, tenant: str, assessment: str, area: str) -> None:
        """A tenant with the default policy and one assessment at the area's first phase."""
        with self.db.write() as conn:
            policy_changes.create_tenant(conn, tenant, default_cells(), actor=ACTOR)
            assessments.create(conn, self.engine.workflow, tenant, assessment, area, key=None)


def search_plan(url: str, tenant: str, places: Sequence[tuple[str, str]], limit: int) -> str:
    """The store's plan (EXPLAIN) for the first page of a resource search over `places`: the
    statement assessments.ids_at runs, with its values inlined."""
    db = Database(url, 1)
    try:
        with db.read() as conn:
            statement = assessments.ids_at_statement(tenant, places, None, limit)
            literal = {"literal_binds": True}
            sql = str(statement.compile(dialect=conn.dialect, compile_kwargs=literal))
            explain = "EXPLAIN QUERY PLAN" if conn.dialect.name == "sqlite" else "EXPLAIN"
            return "\n".join(str(row[-1]) for row in conn.execute(text(f"{explain} {sql}")))
    finally:
        db.dispose()


# -- apps ----------------------------------------------------------------------------------------


@contextmanager
def test_app(url: str) -> Iterator[Flask]:
    """The service's app on a store, in testing mode, its connections released on exit."""
    app = create_app({"DATABASE_URL": url, "TESTING": True})
    try:
        yield app
    finally:
        with app.app_context():
            store().dispose()


def local_of(app: Flask) -> Local:
    """The store and policy engine an app built for itself."""
    with app.app_context():
        return Local(store(), policy_engine())


serving_state = server.serving_state
buffered = server.buffered
"""A WSGI app behind the service's buffering adapter, with the configured limits."""
"""The metrics folder and hash slots every server's workers share, as `serve` makes them."""


def serve(load: Callable[[], Flask], host: str, port: int, workers: int) -> None:
    """Serve `load()`'s app with gunicorn sync workers: the floor's server (issue 12 defines the
    targets against Flask + gunicorn on as many worker processes), whatever `serve` runs."""
    serve_gunicorn(load, host, port, workers, "sync")


def serve_gunicorn(
    load: Callable[[], Flask],
    host: str,
    port: int,
    workers: int,
    worker_class: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Serve `load()`'s app with gunicorn's `worker_class` workers (the app built in each worker
    after the fork), the metrics folder and hash slots shared as `serve` shares them."""
    from gunicorn.app.base import BaseApplication

    def child_exit(_server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": worker_class,
        "accesslog": None,
        "child_exit": child_exit,
        "graceful_timeout": 10,
        # gunicorn 27's control socket has one default path per user: a second server on the
        # host would take it over. Nothing here uses it.
        "control_socket_disable": True,
        **(extra or {}),
    }

    class Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            return load()

    with serving_state():
        Gunicorn().run()


def serve_granian(target: str, host: str, port: int, workers: int) -> None:
    """Serve the factory `target` ("module:function", called in each worker) exactly as
    `workflow-authz serve` serves the service: granian, the buffering adapter, the configured
    limits."""
    settings = server.ServerSettings.from_config(load_config())
    with serving_state():
        server.build(host, port, workers, settings, target).serve()


# -- webhooks ------------------------------------------------------------------------------------


def add_webhook(url: str, tenant: str, endpoint_url: str) -> tuple[int, str]:
    """A webhook endpoint for the tenant's events from now on (private addresses allowed: the
    receivers here are on loopback); its id and signing secret."""
    with writing(url) as conn:
        return endpoints.add(conn, tenant, endpoint_url, None, allow_private=True)


def feed_event(conn: Connection, tenant: str, assessment: str) -> None:
    """One feed event, as a transition into a visible phase writes it (in the caller's
    transaction)."""
    change = events.VisibilityChange(assessment, "assessment", "completed", True)
    events.append(conn, tenant, [change], cause="transition", version=1)


def write_feed_events(url: str, tenant: str, count: int, rate: float | None, prefix: str) -> None:
    """`count` feed events, one transaction each, at `rate` per second (None: at once)."""
    db = Database(url, 1)
    try:
        start = time.perf_counter()
        for i in range(count):
            pause = 0.0 if rate is None else start + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)  # pacing the writer, not waiting for a result
            with db.write() as conn:
                feed_event(conn, tenant, f"{prefix}-{i}")
    finally:
        db.dispose()


def event_times(url: str, tenant: str) -> dict[str, float]:
    """Each of the tenant's events' id and when it was made (Unix seconds)."""
    db = Database(url, 1)
    try:
        with db.read() as conn:
            rows = conn.execute(
                Event.__table__.select().where(Event.tenant == tenant).order_by(Event.seq)
            )
            return {events.event_id(r.tenant, r.seq): r.at.timestamp() for r in rows}
    finally:
        db.dispose()


def post(url: str, body: bytes, timeout: float) -> bool:
    """One POST as a delivery sends it (same client, deadline and checks); whether 2xx."""
    headers = {"content-type": "application/json"}
    return transport.post(url, body, headers, timeout=timeout, allow_private=True).ok
