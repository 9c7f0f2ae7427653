"""Temporary benchmark stores: N tenants of ~30-60 policy rows plus assessments, bulk-inserted.

Every bench entry point (decisions, scale, ...) builds its store here so that they all measure the
same data. Rows go straight into the tables with executemany (creating 10,000 tenants through
PolicyEngine.create_tenant would take minutes); the schema comes from the real migrations. The
content is a pure function of the tenant number, so runs and backends hold identical data.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from sqlalchemy import Connection, Table, create_engine, insert, make_url, text

from bench import internals
from bench.internals import Cell, Row, Workflow

PG_ADMIN_URL = os.environ.get(
    "WORKFLOW_AUTHZ_BENCH_PG_URL",
    os.environ.get(
        "WORKFLOW_AUTHZ_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
)
BACKENDS = ("sqlite", "postgres")
MAX_ROWS = 60
"""Each tenant holds the default rows plus 0 or more extra cells, at most MAX_ROWS in all."""
CHUNK = 20_000
CREATED_AT = datetime(2024, 9, 1, tzinfo=UTC)
ACTOR = "bench"
PREFIX = "school_"
"""Tenant names: the prefix, then the tenant's number in five digits."""
Body = dict[str, str]
"""A POST /authorize body about an assessment: tenant, role, action, assessment."""
Asked = tuple[Body, bool]
"""A POST /authorize body and the answer the generated policy gives it."""


@dataclass(frozen=True)
class Assessed:
    """One generated assessment: its tenant, id, area and current phase."""

    tenant: str
    id: str
    area: str
    phase: str


@dataclass(frozen=True)
class Content:
    """The deterministic content of a benchmark store: tenants, their cells, their assessments."""

    workflow: Workflow
    tenants: int
    assessments_per_tenant: int = 20
    seed: str = "workflow-authz-bench"

    @cached_property
    def default(self) -> tuple[Cell, ...]:
        """The shipped default policy's cells, the start of every tenant's policy."""
        return internals.default_cells()

    @cached_property
    def extras(self) -> tuple[Cell, ...]:
        """Every matrix cell the default policy leaves unticked (candidates for extra rows)."""
        default = set(self.default)
        return tuple(c for c in self.workflow.cells() if c not in default)

    def tenant(self, index: int) -> str:
        """The name of tenant number `index`."""
        return f"{PREFIX}{index:05d}"

    def index(self, tenant: str) -> int:
        """The number of the tenant named `tenant`."""
        return int(tenant.removeprefix(PREFIX))

    def names(self) -> list[str]:
        """Every tenant's name, in tenant-number order."""
        return [self.tenant(i) for i in range(self.tenants)]

    def cells(self, index: int) -> frozenset[Cell]:
        """Tenant `index`'s cells: the default ones plus a deterministic sample of extra ones."""
        rng = random.Random(f"{self.seed}:cells:{index}")
        extra = rng.randint(0, max(0, min(MAX_ROWS - len(self.default), len(self.extras))))
        return frozenset(self.default) | frozenset(rng.sample(self.extras, extra))

    def rows(self, index: int) -> list[Row]:
        """Tenant `index`'s policy rows as (tenant, role, area, phase, action), sorted."""
        name = self.tenant(index)
        return [(name, *cell) for cell in sorted(self.cells(index))]

    def assessments(self, index: int) -> list[Assessed]:
        """Tenant `index`'s assessments, each in a deterministic phase of a deterministic area."""
        rng = random.Random(f"{self.seed}:assessments:{index}")
        name, areas = self.tenant(index), self.workflow.areas
        made = []
        for n in range(self.assessments_per_tenant):
            area = areas[rng.randrange(len(areas))]
            phase = area.phases[rng.randrange(len(area.phases))]
            made.append(Assessed(name, f"a{index:05d}-{n:04d}", area.id, phase.id))
        return made

    def allowed(self, rows: Sequence[Row]) -> tuple[bool, ...]:
        """The generated policy's answer to each 5-tuple (the truth benchmarks check against)."""
        cells = {tenant: self.cells(self.index(tenant)) for tenant in {r[0] for r in rows}}
        return tuple(r[1:] in cells[r[0]] for r in rows)

    def working(self, rng: random.Random, size: int) -> list[int]:
        """A random sample of up to `size` tenant numbers: the tenants a mix spreads over."""
        return rng.sample(range(self.tenants), min(size, self.tenants))

    def questions(self, rng: random.Random, tenants: Sequence[int], count: int) -> list[Asked]:
        """`count` random questions, each about a random one of `tenants`, and their answers."""
        return [self.question(rng, rng.choice(tenants)) for _ in range(count)]

    def question(self, rng: random.Random, index: int) -> Asked:
        """A random role and action about a random assessment of tenant `index`, and its answer."""
        found = rng.choice(self.assessments(index))
        role, action = rng.choice(self.workflow.roles).id, rng.choice(self.workflow.actions)
        body = {"tenant": found.tenant, "role": role, "action": action, "assessment": found.id}
        return body, (role, found.area, found.phase, action) in self.cells(index)


@dataclass(frozen=True)
class Store:
    """A populated temporary store: where it is, what it holds."""

    backend: str
    url: str
    content: Content
    rows: int


def populate(conn: Connection, content: Content) -> int:
    """Insert every tenant's version, rows and assessments in chunks; returns the row count."""
    total = 0
    for start in range(0, content.tenants, 1000):
        indexes = range(start, min(start + 1000, content.tenants))
        rows = [r for i in indexes for r in content.rows(i)]
        total += len(rows)
        _insert(conn, internals.RULES_TABLE, [_rule(r) for r in rows])
        versions = [_version(content.tenant(i)) for i in indexes]
        _insert(conn, internals.VERSIONS_TABLE, versions)
        made = [a for i in indexes for a in content.assessments(i)]
        _insert(conn, internals.ASSESSMENTS_TABLE, [_assessment(a) for a in made])
    return total


def _insert(conn: Connection, table: Table, values: Sequence[dict[str, object]]) -> None:
    """executemany in chunks, so no single statement's parameter list grows without bound."""
    for start in range(0, len(values), CHUNK):
        conn.execute(insert(table), list(values[start : start + CHUNK]))


def _rule(row: Row) -> dict[str, object]:
    tenant, role, area, phase, action = row
    return {"ptype": "p", "v0": tenant, "v1": role, "v2": area, "v3": phase, "v4": action}


def _version(tenant: str) -> dict[str, object]:
    return {"tenant": tenant, "version": 1, "updated_at": CREATED_AT, "updated_by": ACTOR}


def _assessment(a: Assessed) -> dict[str, object]:
    return {
        "tenant": a.tenant,
        "id": a.id,
        "area": a.area,
        "phase": a.phase,
        "version": 1,
        "created_at": CREATED_AT,
        "updated_at": CREATED_AT,
    }


def postgres_available(admin_url: str = PG_ADMIN_URL) -> bool:
    """True when the PostgreSQL server behind `admin_url` accepts a connection."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure to connect means "no server here"
        return False
    finally:
        engine.dispose()


@contextmanager
def temporary_store(backend: str, content: Content) -> Iterator[Store]:
    """A migrated, populated store on `backend` that is removed again on exit, even on error."""
    with _empty_store(backend) as url:
        internals.migrate(url)
        with internals.writing(url) as conn:
            rows = populate(conn, content)
        if backend == "postgres":
            _vacuum(url)
        yield Store(backend, url, content, rows)


def _vacuum(url: str) -> None:
    """Fresh planner statistics after the bulk insert, as autovacuum would gather later."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()


@contextmanager
def _empty_store(backend: str) -> Iterator[str]:
    """The URL of a new empty store: a SQLite file in a temp dir, or a PostgreSQL database."""
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="wa_bench_")
        try:
            yield f"sqlite:///{Path(folder) / 'store.sqlite3'}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    elif backend == "postgres":
        with _postgres_database() as url:
            yield url
    else:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")


@contextmanager
def _postgres_database(admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """Create a PostgreSQL database of a random name; drop it (forcing connections off) after."""
    name = f"wa_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
