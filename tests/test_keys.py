"""API keys that cannot collide (issue 10, item 5), on SQLite and PostgreSQL: a drawn prefix that
is taken is drawn again (inside the caller's transaction, which keeps what it did before);
`keys revoke` takes a prefix, a unique leading part of one, `wa_<prefix>` or the whole key, and
refuses an argument that fits several keys, naming them and revoking nothing; migration 0003
changes no key's answer (it keeps the one key a shared prefix found, revokes and marks the
others) and makes the prefix unique."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Connection, create_engine, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from service import keys
from service.cli import main
from service.db import Database
from service.errors import Unauthorized
from service.models import ApiKey, utcnow
from tests.conftest import PG_ADMIN_URL

real_token_hex = keys.secrets.token_hex
PADDING_KEYS = 200  # rows enough to fill a PostgreSQL page several times over


def drawing(monkeypatch: pytest.MonkeyPatch, prefixes: Sequence[str]) -> list[str]:
    """Key prefixes come from `prefixes` first, then at random; returns every prefix drawn."""
    queue, drawn = list(prefixes), []

    def token_hex(nbytes: int | None = None) -> str:
        if nbytes != keys.PREFIX_BYTES:
            return real_token_hex(nbytes)
        drawn.append(queue.pop(0) if queue else real_token_hex(nbytes))
        return drawn[-1]

    monkeypatch.setattr(keys.secrets, "token_hex", token_hex)
    return drawn


def key_id(conn: Connection, token: str) -> int:
    return keys.authenticate(conn, f"Bearer {token}").id


def prefix(token: str) -> str:
    return token.split("_")[1]


# -- generation ------------------------------------------------------------------------------------


def test_a_drawn_prefix_that_is_taken_is_drawn_again_in_the_same_transaction(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with db.write() as conn:
        first = keys.create(conn, "first", "default")
        drawn = drawing(monkeypatch, [prefix(first)])
        second = keys.create(conn, "second", "default")  # same transaction: the row stays
    assert drawn[0] == prefix(first) and len(drawn) == 2, "the taken draw, then a fresh one"
    assert prefix(second) == drawn[1] != prefix(first)
    with db.read() as conn:
        assert key_id(conn, first) != key_id(conn, second)
        names = conn.execute(select(ApiKey.name).order_by(ApiKey.id)).scalars().all()
    assert names == ["first", "second"]


# -- revoke ----------------------------------------------------------------------------------------


@pytest.fixture
def cli(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """`workflow-authz ARGS` on the test's store."""
    monkeypatch.setenv("WORKFLOW_AUTHZ_DATABASE_URL", store_url)
    return lambda *args: CliRunner().invoke(main, list(args))


@pytest.fixture
def three(db: Database, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Keys `north`, `south` and `ops` on prefixes abcd1111, abcd2222 and ef001234."""
    drawing(monkeypatch, ["abcd1111", "abcd2222", "ef001234"])
    with db.write() as conn:
        return {name: keys.create(conn, name, "default") for name in ("north", "south", "ops")}


def active(db: Database, tokens: dict[str, str]) -> set[str]:
    """The names of the keys that still authenticate."""
    working = set()
    with db.read() as conn:
        for name, token in tokens.items():
            try:
                key_id(conn, token)
                working.add(name)
            except Unauthorized:
                pass
    return working


def test_an_argument_that_fits_several_keys_is_refused_naming_them(
    db: Database, cli: Callable[..., Result], three: dict[str, str]
) -> None:
    refused = cli("keys", "revoke", "abcd")
    assert refused.exit_code == 2
    assert refused.stderr == (
        "Error: 'abcd' fits 2 keys: abcd1111 (default, active, north), "
        "abcd2222 (default, active, south); give more of the prefix. Nothing was revoked\n"
    )
    assert active(db, three) == {"north", "south", "ops"}
    assert cli("keys", "revoke", "abcd1").stdout == "Revoked key abcd1111 (north).\n"
    again = cli("keys", "revoke", "abcd")
    assert again.exit_code == 2 and "abcd1111 (default, revoked, north)" in again.stderr
    assert active(db, three) == {"south", "ops"}


def test_revoke_takes_the_prefix_wa_prefix_or_the_whole_key(
    db: Database, cli: Callable[..., Result], three: dict[str, str]
) -> None:
    assert cli("keys", "revoke", "ABCD1111").stdout == "Revoked key abcd1111 (north).\n"
    assert cli("keys", "revoke", "wa_abcd2222").stdout == "Revoked key abcd2222 (south).\n"
    assert cli("keys", "revoke", three["ops"]).stdout == "Revoked key ef001234 (ops).\n"
    assert active(db, three) == set()
    twice = cli("keys", "revoke", "ef00")
    assert (twice.exit_code, twice.stderr) == (1, "Error: key ef001234 (ops) is revoked already\n")


@pytest.mark.parametrize(
    ("given", "exit_code", "error"),
    [
        (
            "abc",
            2,
            "'abc' is not a key prefix: give the 8 hex digits after `wa_` that `keys list` "
            "shows (at least the first 4)",
        ),
        ("abcd11112", 2, "'abcd11112' is not a key prefix"),
        ("abcd-111", 2, "'abcd-111' is not a key prefix"),
        ("abcd%", 2, "'abcd%' is not a key prefix"),
        ("9999", 1, "no key with prefix '9999' (`workflow-authz keys list` shows them)"),
        ("wa_abcd1111_not-its-secret", 1, "no key is wa_abcd1111_..."),
    ],
)
def test_an_argument_that_fits_no_key_revokes_nothing(
    db: Database,
    cli: Callable[..., Result],
    three: dict[str, str],
    given: str,
    exit_code: int,
    error: str,
) -> None:
    refused = cli("keys", "revoke", given)
    assert refused.exit_code == exit_code
    assert refused.stderr.startswith(f"Error: {error}") and "not-its-secret" not in refused.stderr
    assert active(db, three) == {"north", "south", "ops"}


# -- migration 0003 --------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store with no schema: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite3'}"
        return
    request.getfixturevalue("pg_template")  # skipped (failed in CI) without PostgreSQL
    name = f"wa_old_{uuid.uuid4().hex[:12]}"
    server = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with server.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    server.dispose()


@pytest.fixture
def unmigrated(empty_url: str) -> Iterator[Database]:
    db = Database(empty_url, 1)
    yield db
    db.dispose()


def raw_key(name: str, key_prefix: str) -> dict[str, object]:
    """An api_keys row for the key `wa_<key_prefix>_<name>`, as any revision stored it."""
    return {
        "name": name,
        "tenant": "default",
        "prefix": key_prefix,
        "digest": keys.digest(f"wa_{key_prefix}_{name}"),
        "created_at": utcnow(),
    }


def at_0002(db: Database, rows: list[tuple[str, str]]) -> dict[str, str]:
    """A store at revision 0002 holding keys (name, prefix), in order; their tokens by name."""
    db.upgrade("0002")
    with db.write() as conn:
        for name, key_prefix in rows:
            conn.execute(insert(ApiKey).values(raw_key(name, key_prefix)))
    return {name: f"wa_{key_prefix}_{name}" for name, key_prefix in rows}


def revoke_0002(db: Database, name: str) -> datetime:
    """Revoke a key as revision 0002's `keys revoke` did (an UPDATE of its row)."""
    moment = utcnow()
    with db.write() as conn:
        conn.execute(update(ApiKey).where(ApiKey.name == name).values(revoked_at=moment))
    return moment


def stored_keys(db: Database) -> dict[str, Any]:
    with db.read() as conn:
        return {row.name: row for row in conn.execute(select(ApiKey))}


def test_migration_0003_keeps_the_key_a_shared_prefix_found_and_revokes_the_others(
    unmigrated: Database,
) -> None:
    db = unmigrated
    tokens = at_0002(
        db,
        [
            ("first", "aaaa0000"),  # both active: the first is the one found
            ("second", "aaaa0000"),
            ("revoked-first", "bbbb0000"),  # the first revoked: still the one found
            ("active-second", "bbbb0000"),
            ("alone", "cccc0000"),
        ],
    )
    revoked_at = revoke_0002(db, "revoked-first")
    assert active(db, tokens) == {"first", "alone"}, "what revision 0002 answered"
    db.upgrade()

    assert active(db, tokens) == {"first", "alone"}, "no key's answer changed"
    stored = stored_keys(db)
    for name, marked in [("second", "aaaa"), ("active-second", "bbbb")]:
        assert stored[name].prefix == f"{marked}~{stored[name].id}"
        assert stored[name].revoked_at is not None
    for name in ("first", "revoked-first", "alone"):
        assert stored[name].prefix == prefix(tokens[name])
    assert stored["revoked-first"].revoked_at == revoked_at, "its revocation is kept"
    with pytest.raises(IntegrityError), db.write() as conn:
        conn.execute(insert(ApiKey).values(raw_key("copy", "aaaa0000")))


def test_migration_0003_keeps_a_later_key_the_lookup_found_after_a_revoke_moved_the_first(
    unmigrated: Database,
) -> None:
    """On PostgreSQL a revoke on a full page writes the row's new version on another page, and
    the index then finds the second key first: it authenticated, and must go on doing so. (On
    SQLite the first is still found: the second never authenticated, and still does not.)"""
    db = unmigrated
    padding = [(f"pad{i:03}", f"{i:08x}") for i in range(PADDING_KEYS)]
    tokens = at_0002(db, [("first", "dddd0000"), ("second", "dddd0000"), *padding])
    revoke_0002(db, "first")
    shared = {"first": tokens["first"], "second": tokens["second"]}
    before = active(db, shared)
    postgres = db.url.get_backend_name() == "postgresql"
    assert before == ({"second"} if postgres else set()), "what revision 0002 answered"
    db.upgrade()

    assert active(db, shared) == before, "no key's answer changed"
    stored = stored_keys(db)
    moved, kept = ("first", "second") if postgres else ("second", "first")
    assert stored[moved].prefix == f"dddd~{stored[moved].id}"
    assert stored[kept].prefix == "dddd0000"
