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
from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from service.errors import Unavailable

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class Database:
    """One engine per process; read and write transactions that turn store failures into 503s."""

    def __init__(self, url: str, pool_size: int = 4) -> None:
        self.url = make_url(url)
        self.engine = _create_engine(url, pool_size)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction; any store failure becomes Unavailable."""
        with _store_errors(), self.engine.connect() as conn, conn.begin():
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

    def upgrade(self) -> None:
        """Create or upgrade the schema to the newest migration (run once, by `init`)."""
        if self.url.get_backend_name() == "sqlite" and self.url.database:
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        with _store_errors(), self.engine.begin() as conn:
            config = _alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def is_current(self) -> bool:
        """True when the schema is at the newest migration."""
        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        with self.read() as conn:
            return MigrationContext.configure(conn).get_current_revision() == head

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _store_errors() -> Iterator[None]:
    """Map driver and connection failures to Unavailable; integrity errors pass through."""
    try:
        yield
    except DBAPIError as exc:
        if exc.orig is not None and type(exc.orig).__name__ == "IntegrityError":
            raise
        raise Unavailable("the store cannot be reached or failed; nothing was allowed") from exc
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
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")
