"""The store: engine set-up for SQLite and PostgreSQL, transactions, and the migrations entry."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask, current_app
from psycopg.abc import PQGen
from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    RootTransaction,
    create_engine,
    event,
    make_url,
    text,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.sql.compiler import Compiled

from service.config import default
from service.errors import CommitUnknown, Unavailable

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_EXTENSION = "workflow_authz.db"
_LIMITS = text(
    "SELECT set_config('statement_timeout', :statement, true), "
    "set_config('idle_in_transaction_session_timeout', :idle, true)"
)
"""A write transaction's server-side limits (SET LOCAL: they end with it, even behind PgBouncer)."""
RV = TypeVar("RV")


class NoReply(psycopg.OperationalError):
    """The store sent nothing back within the deadline: a partitioned link or a stalled server."""


class _DeadlineConnection(psycopg.Connection[Any]):
    """A psycopg connection that waits at most `deadline` seconds for each reply.

    libpq has no client-side limit on a query: behind a partition, or a proxy that still
    acknowledges bytes but stopped forwarding them, TCP sees nothing wrong and a request would
    wait for ever. Every round trip of psycopg goes through `wait`; past the deadline the
    connection is closed, so SQLAlchemy sees a lost connection and never hands it out again.
    """

    deadline: float | None = None

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        try:
            return super().wait(gen, interval, self.deadline if timeout is None else timeout)
        except psycopg.errors._WaitTimeout:  # raised only when a timeout was given
            if timeout is not None:
                raise
            self.close()
            raise NoReply(f"no reply from the store within {self.deadline:g} s") from None


class Database:
    """One engine per process; read and write transactions that turn store failures into 503s."""

    def __init__(
        self, url: str, pool_size: int = 4, timeout: int = default("STORE_TIMEOUT")
    ) -> None:
        self.url = make_url(url)
        self.timeout = max(0, timeout) if self.url.get_backend_name() == "postgresql" else 0
        self.engine = _create_engine(url, pool_size, self.timeout)
        self.reader = _create_reader(url, pool_size, self.timeout) or self.engine
        self._compiled: dict[Executable, tuple[str, tuple[str, ...] | None]] = {}

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

    def fetch_one(self, statement: Executable, params: Mapping[str, Any]) -> Any:
        """The first row (a tuple) of a read statement built once at import, or None; run on a
        connection of the read pool through the driver's own cursor.

        For the one statement a decision needs, where SQLAlchemy's Core around it (a Connection,
        its transaction, the execution context, the result) costs more than the store takes
        to answer it. It is the same read as one in `read()`: the same pool and connections
        (on PostgreSQL autocommit, with the reply deadline; the driver prepares a statement run
        often), a statement that sees what was committed when it ran, and the same failures:
        Unavailable, retryable when the connection died (it is then invalidated). Only plain
        bound values (no type conversion either way)."""
        sql, names = self._sql(statement)
        try:
            with _store_errors():  # the pool's own failures (no connection free in time)
                fairy = self.reader.raw_connection()
        except self.reader.dialect.loaded_dbapi.Error as exc:  # the pool hands on the driver's
            raise Unavailable("the store cannot be reached; nothing was allowed") from exc
        cursor = None
        try:
            cursor = fairy.cursor()
            cursor.execute(sql, params if names is None else [params[n] for n in names])
            row = cursor.fetchone()
            cursor.close()
            return row
        except self.reader.dialect.loaded_dbapi.Error as exc:
            dead = self.reader.dialect.is_disconnect(exc, fairy.dbapi_connection, cursor)
            if dead:  # the pool is renewed, as Core does: its other connections died too
                fairy.invalidate(exc)
                self.reader.dispose(close=False)
            error = Unavailable("the store cannot be reached or failed; nothing was allowed")
            error.retryable = dead and not isinstance(exc, NoReply)
            raise error from exc
        finally:
            fairy.close()

    def _sql(self, statement: Executable) -> tuple[str, tuple[str, ...] | None]:
        """A statement's SQL for the read pool's driver and, for a positional paramstyle, the
        order of its parameters; compiled once per statement."""
        found = self._compiled.get(statement)
        if found is None:
            compiled: Compiled = statement.compile(dialect=self.reader.dialect)  # type: ignore[attr-defined]
            order = compiled.positiontup if compiled.positional else None  # type: ignore[attr-defined]
            found = self._compiled[statement] = (
                str(compiled),
                None if order is None else tuple(order),
            )
        return found

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One atomic write transaction: everything in it commits together or not at all.

        On SQLite the transaction takes the write lock up front (BEGIN IMMEDIATE) so two writers
        queue instead of failing when a reader upgrades. On PostgreSQL a statement waits at most
        the timeout (a lock held by a silent client), and a transaction left idle by a client
        that vanished is ended by the server after half of it, so its locks stop blocking others
        before they give up. A commit whose connection is lost raises CommitUnknown: it may have
        reached the server, so the caller must not be told that nothing was written.
        """
        with _store_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin() as transaction:
                if self.timeout:
                    ms = self.timeout * 1000
                    conn.execute(_LIMITS, {"statement": f"{ms}ms", "idle": f"{ms // 2}ms"})
                yield conn
                _commit(transaction)

    def upgrade(self, revision: str = "head") -> None:
        """Create or upgrade the schema to the newest migration (run once, by `init`), or to an
        older `revision` (tests of a migration start there), on an engine of its own without
        the request timeouts: a migration may run long."""
        if self.url.get_backend_name() == "sqlite" and self.url.database:
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = _create_engine(self.url.render_as_string(hide_password=False), 1, 0)
        try:
            with _store_errors(), engine.begin() as conn:
                config = _alembic_config()
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
        finally:
            engine.dispose()

    def is_current(self) -> bool:
        """True when the schema is at the newest migration."""
        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        with self.read() as conn:
            return MigrationContext.configure(conn).get_current_revision() == head

    def dispose(self) -> None:
        self.engine.dispose()
        self.reader.dispose()


class Reading:
    """One request's reads: a statement about one row through the driver (Database.fetch_one),
    or on the request's connection when it has one open already (so a request never holds two
    of the pool's connections); statements about several rows on that connection, opened in
    `opened` the first time one is needed."""

    def __init__(
        self, db: Database, conn: Connection | None, opened: ExitStack | None = None
    ) -> None:
        self.db = db
        self.conn = conn
        self.opened = opened

    def one(self, statement: Executable, params: Mapping[str, Any]) -> Any:
        """The first row of a statement built once, or None."""
        if self.conn is not None:
            return self.conn.execute(statement, params).first()
        return self.db.fetch_one(statement, params)

    def connection(self) -> Connection:
        """The request's read connection, opened on first use."""
        if self.conn is None:
            if self.opened is None:
                raise RuntimeError("Reading needs a connection, or an ExitStack to open one in")
            self.conn = self.opened.enter_context(self.db.read())
        return self.conn


def init_app(app: Flask) -> None:
    """Open the process's store from the app's settings: one engine (and pool) per process."""
    config = app.config
    app.extensions[_EXTENSION] = Database(
        config["DATABASE_URL"], config["POOL_SIZE"], config["STORE_TIMEOUT"]
    )


def store() -> Database:
    """The current app's store (flaskr's get_db): for views and the parts built on the app."""
    database: Database = current_app.extensions[_EXTENSION]
    return database


def _commit(transaction: RootTransaction) -> None:
    """Commit; a connection lost meanwhile leaves the outcome unknown (the COMMIT may have
    reached the server and only its answer been lost). A refusal the server sent is a known
    outcome, nothing saved, and stays an ordinary store error."""
    try:
        transaction.commit()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        raise CommitUnknown() from exc


@contextmanager
def _store_errors() -> Iterator[None]:
    """Map driver and connection failures to Unavailable; integrity errors pass through.

    A read may be retried once when its connection died (a database restart left the pool
    dead), but not when the store did not reply in time: it would not answer the retry either.
    """
    try:
        yield
    except DBAPIError as exc:
        if isinstance(exc, IntegrityError):  # psycopg's UniqueViolation, sqlite3's IntegrityError
            raise
        error = Unavailable("the store cannot be reached or failed; nothing was allowed")
        error.retryable = exc.connection_invalidated and not isinstance(exc.orig, NoReply)
        raise error from exc
    except SQLAlchemyError as exc:
        raise Unavailable("the store failed; nothing was allowed") from exc


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _create_engine(url: str, pool_size: int, timeout: int) -> Engine:
    """An engine tuned for the backend: SQLite in WAL mode, PostgreSQL with a sized pool."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return _postgres_engine(
        url,
        timeout,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def _create_reader(url: str, pool_size: int, timeout: int) -> Engine | None:
    """PostgreSQL: a separate autocommit pool for reads (SQLite reads share the one engine)."""
    if make_url(url).get_backend_name() == "sqlite":
        return None
    return _postgres_engine(
        url,
        timeout,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        isolation_level="AUTOCOMMIT",
    )


def _postgres_engine(url: str, timeout: int, **options: Any) -> Engine:
    """A PostgreSQL engine whose connections give up after `timeout` seconds (0: never): to
    connect (libpq's connect_timeout, at least 2, unless the URL sets one) and for each reply
    (the deadline)."""
    if timeout <= 0:
        return create_engine(url, **options)
    given = "connect_timeout" in make_url(url).query
    limit = {} if given else {"connect_timeout": max(2, timeout)}
    engine = create_engine(url, connect_args=limit, **options)

    def connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        connection = _DeadlineConnection.connect(*cargs, **cparams)
        connection.deadline = timeout
        return connection

    event.listen(engine, "do_connect", connect)
    return engine


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
