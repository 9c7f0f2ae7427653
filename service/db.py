"""The store: engine set-up for SQLite and PostgreSQL, transactions, and the migrations entry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask, current_app
from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from service.errors import Unavailable

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_EXTENSION = "workflow_authz.db"


class Database:
    """One engine per process; read and write transactions that turn store failures into 503s."""

    def __init__(self, url: str, pool_size: int = 4) -> None:
        self.url = make_url(url)
        self.engine = _create_engine(url, pool_size)
        self.reader = _create_reader(url, pool_size) or self.engine

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read; any store failure becomes Unavailable (retryable when the connection died).

        On PostgreSQL reads run in autocommit on a pool of their own, with no pre-ping: one
        network round trip per statement instead of five per request. A connection that died
        (database restart) invalidates the pool and the caller may retry once (see api.py).
        """
        with _store_errors(), self.reader.connect() as conn:
            conn = conn.execution_options(sqlite_begin=None)
            with conn.begin():
                yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One atomic write transaction: everything in it commits together or not at all.

        On SQLite the transaction takes the write lock up front (BEGIN IMMEDIATE) so two writers
        queue instead of failing when a reader upgrades.
        """
        with _store_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    def upgrade(self, revision: str = "head") -> None:
        """Create or upgrade the schema to the newest migration (run once, by `init`), or to an
        older `revision` (tests of a migration start there)."""
        if self.url.get_backend_name() == "sqlite" and self.url.database:
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        with _store_errors(), self.engine.begin() as conn:
            config = _alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)

    def is_current(self) -> bool:
        """True when the schema is at the newest migration."""
        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        with self.read() as conn:
            return MigrationContext.configure(conn).get_current_revision() == head

    def dispose(self) -> None:
        self.engine.dispose()
        self.reader.dispose()


def init_app(app: Flask) -> None:
    """Open the process's store from the app's settings: one engine (and pool) per process."""
    app.extensions[_EXTENSION] = Database(app.config["DATABASE_URL"], app.config["POOL_SIZE"])


def store() -> Database:
    """The current app's store (flaskr's get_db): for views and the parts built on the app."""
    database: Database = current_app.extensions[_EXTENSION]
    return database


@contextmanager
def _store_errors() -> Iterator[None]:
    """Map driver and connection failures to Unavailable; integrity errors pass through."""
    try:
        yield
    except DBAPIError as exc:
        if isinstance(exc, IntegrityError):  # psycopg's UniqueViolation, sqlite3's IntegrityError
            raise
        error = Unavailable("the store cannot be reached or failed; nothing was allowed")
        error.retryable = exc.connection_invalidated
        raise error from exc
    except SQLAlchemyError as exc:
        raise Unavailable("the store failed; nothing was allowed") from exc


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _create_engine(url: str, pool_size: int) -> Engine:
    """An engine tuned for the backend: SQLite in WAL mode, PostgreSQL with a sized pool."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_recycle=1800
    )


def _create_reader(url: str, pool_size: int) -> Engine | None:
    """PostgreSQL: a separate autocommit pool for reads (SQLite reads share the one engine)."""
    if make_url(url).get_backend_name() == "sqlite":
        return None
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        isolation_level="AUTOCOMMIT",
    )


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    """WAL lets readers run beside a writer; we issue BEGIN ourselves to choose its kind."""
    dbapi_conn.isolation_level = None
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "foreign_keys=ON",
        "busy_timeout=30000",
    ):
        dbapi_conn.execute(f"PRAGMA {pragma}")


def _sqlite_on_begin(conn: Connection) -> None:
    """BEGIN of the kind asked for; none for reads, whose statements each see a committed state
    (as PostgreSQL's autocommit reads do)."""
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    if mode is not None:
        conn.exec_driver_sql(f"BEGIN {mode}")
