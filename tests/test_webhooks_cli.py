"""`workflow-authz webhooks` (issue 13, part 1), on SQLite and PostgreSQL: `add` prints the id
and a signing secret `standardwebhooks` takes, once (never in `list`); `list` shows each
endpoint's tenant, name, URL, state, last delivery and backlog, for one tenant or all;
`rotate-secret` prints a new secret and until when the old one still signs; `retry` makes a
failing or disabled endpoint active; `remove` deletes one. Bad input (a URL the service may not
deliver to, a name that is not free text, an id that is no number) exits 2, an unknown tenant or
endpoint or a URL taken exits 1, and either way nothing is written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, text, update
from standardwebhooks import Webhook

from service.cli import main
from service.db import Database
from service.errors import Conflict, InvalidRequest, NotFound
from service.models import WebhookEndpoint, iso, utcnow
from service.webhooks import endpoints
from tests.conftest import Api, complete, in_sqlite_busy_wait

PUBLIC = "http://93.184.215.14/hooks/feed"
ADDED = re.compile(r"Added webhook endpoint (\d+) for tenant '(\w+)': (\S+)\n")
SECRET = re.compile(r"^    (whsec_\S+)$", re.M)

Cli = Callable[..., Result]


@pytest.fixture
def cli(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`workflow-authz ARGS` on the test's store; keyword `env` adds WORKFLOW_AUTHZ_* values."""
    monkeypatch.setenv("WORKFLOW_AUTHZ_DATABASE_URL", store_url)
    monkeypatch.delenv("WORKFLOW_AUTHZ_WEBHOOK_ALLOW_PRIVATE", raising=False)

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        named = {f"WORKFLOW_AUTHZ_{k}": v for k, v in (env or {}).items()}
        return CliRunner().invoke(main, list(args), env=named)

    return run


def add(cli: Cli, *args: str, **kwargs: Any) -> tuple[int, str, Result]:
    """`webhooks add ARGS`, which must succeed: the id and secret it printed, and the result."""
    result = cli("webhooks", "add", *args, **kwargs)
    assert result.exit_code == 0, result.output
    added, secret = ADDED.search(result.output), SECRET.findall(result.output)
    assert added is not None and len(secret) == 1, result.output
    return int(added.group(1)), secret[0], result


def rows(cli: Cli, *args: str) -> list[dict[str, str]]:
    """`webhooks list ARGS` read by its header."""
    result = cli("webhooks", "list", *args)
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    return [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]


def stored(store_url: str) -> list[Any]:
    """Every endpoint row, oldest first."""
    db = Database(store_url, 1)
    try:
        with db.read() as conn:
            return list(conn.execute(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))
    finally:
        db.dispose()


def change(store_url: str, endpoint_id: int, **values: Any) -> None:
    """Write an endpoint's delivery state as the delivery loop would."""
    db = Database(store_url, 1)
    try:
        with db.write() as conn:
            conn.execute(
                update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).values(**values)
            )
    finally:
        db.dispose()


def endpoint(store_url: str, endpoint_id: int) -> Any:
    db = Database(store_url, 1)
    try:
        with db.read() as conn:
            return endpoints.find(conn, endpoint_id)
    finally:
        db.dispose()


# -- add ------------------------------------------------------------------------------------------


def test_add_prints_the_id_and_a_secret_once_and_list_never_shows_it(
    cli: Cli, store_url: str
) -> None:
    endpoint_id, secret, result = add(
        cli, "--tenant", "default", "--url", PUBLIC, "--name", "Gradebook"
    )
    assert "shown only now" in result.output and "cannot be shown again" in result.output
    Webhook(secret)  # the form the standardwebhooks library reads
    (row,) = stored(store_url)
    assert (row.id, row.tenant, row.name, row.url, row.secret) == (
        endpoint_id,
        "default",
        "Gradebook",
        PUBLIC,
        secret,
    )
    listed = cli("webhooks", "list", "--tenant", "default").output
    assert PUBLIC in listed and secret not in listed and secret.removeprefix("whsec_") not in listed


def test_add_names_the_endpoint_after_its_host_by_default(cli: Cli) -> None:
    add(cli, "--tenant", "default", "--url", "https://[2606:4700:4700::1111]:8443/in")
    assert [r["name"] for r in rows(cli)] == ["2606:4700:4700::1111"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--url", "http://127.0.0.1:9000/"], "127.0.0.1 is a loopback address; refused unless"),
        (["--url", "http://localhost/"], "'localhost', which resolves to 127.0.0.1"),
        (["--url", "http://2130706433/"], "reads it as 127.0.0.1"),
        (["--url", "http://10.0.0.8/"], "a private address"),
        (["--url", "ftp://93.184.215.14/"], "must be an http:// or https:// URL"),
        (["--url", "https://ops:hunter2@93.184.215.14/"], "must not hold a user name or password"),
        (["--url", "https://sis.school.invalid/"], "does not resolve"),
        (["--url", PUBLIC, "--name", "bad\x1b[31m"], "endpoint name must not hold U+001B"),
        (["--url", PUBLIC, "--name", "   "], "endpoint name must not be blank"),
        (["--url", PUBLIC, "--name", "x" * 201], "at most 200 characters"),
    ],
)
def test_add_refuses_bad_input_with_exit_2_and_stores_nothing(
    cli: Cli, store_url: str, args: list[str], words: str
) -> None:
    result = cli("webhooks", "add", "--tenant", "default", *args)
    assert result.exit_code == 2, result.output
    assert words in result.stderr and "Traceback" not in result.output
    assert stored(store_url) == []


def test_allow_private_lets_an_operator_add_a_receiver_on_its_own_network(
    cli: Cli, store_url: str
) -> None:
    allowed = {"WEBHOOK_ALLOW_PRIVATE": "true"}
    endpoint_id, _, _ = add(cli, "--tenant", "default", "--url", "http://127.0.0.1:9/", env=allowed)
    assert [r.id for r in stored(store_url)] == [endpoint_id]
    odd = cli("webhooks", "add", "--tenant", "default", "--url", "http://0177.0.0.1/", env=allowed)
    assert odd.exit_code == 2 and "a.b.c.d" in odd.stderr, "an odd spelling is never allowed"


def test_add_refuses_an_unknown_tenant_and_a_url_the_tenant_has_already(
    cli: Cli, store_url: str
) -> None:
    unknown = cli("webhooks", "add", "--tenant", "north", "--url", PUBLIC)
    assert unknown.exit_code == 1 and "unknown tenant 'north'" in unknown.stderr
    first, _, _ = add(cli, "--tenant", "default", "--url", PUBLIC)
    again = cli("webhooks", "add", "--tenant", "default", "--url", PUBLIC, "--name", "again")
    assert again.exit_code == 1 and f"has endpoint {first} for this URL already" in again.stderr
    assert cli("tenants", "create", "north").exit_code == 0
    add(cli, "--tenant", "north", "--url", PUBLIC)  # another tenant's receiver may be the same
    assert [r.tenant for r in stored(store_url)] == ["default", "north"]


@pytest.mark.parametrize(
    "spelling",
    [
        "HTTP://93.184.215.14/hooks/feed",
        "http://93.184.215.14:80/hooks/feed",
        "http://93.184.215.14:0080/hooks/feed",
    ],
)
def test_another_spelling_of_a_url_the_tenant_has_is_the_same_endpoint(
    cli: Cli, store_url: str, spelling: str
) -> None:
    first, _, _ = add(cli, "--tenant", "default", "--url", PUBLIC)
    again = cli("webhooks", "add", "--tenant", "default", "--url", spelling)
    assert again.exit_code == 1 and f"has endpoint {first} for this URL already" in again.stderr
    assert [r.url for r in stored(store_url)] == [PUBLIC]


def test_a_url_is_stored_in_one_spelling_and_its_path_as_written(cli: Cli, store_url: str) -> None:
    v6 = "2606:2800:21f:cb07::8b2c"
    _, _, added = add(cli, "--tenant", "default", "--url", "HTTPS://93.184.215.14:443")
    assert "'default': https://93.184.215.14/\n" in added.output  # as stored
    add(cli, "--tenant", "default", "--url", "https://93.184.215.14/Hooks?To=Feed")
    add(cli, "--tenant", "default", "--url", "https://93.184.215.14:8443/hooks/%7e/./a")
    add(cli, "--tenant", "default", "--url", "http://[2606:2800:021F:CB07:0:0:0:8B2C]:80/hooks")
    assert [r["url"] for r in rows(cli, "--tenant", "default")] == [
        "https://93.184.215.14/",
        "https://93.184.215.14/Hooks?To=Feed",
        "https://93.184.215.14:8443/hooks/%7E/./a",
        f"http://[{v6}]/hooks",
    ]
    for taken in (
        "https://93.184.215.14/",
        "https://93.184.215.14:8443/hooks/%7E/./a",
        f"HTTP://[{v6.upper()}]/hooks",
        "http://[2606:2800:21f:cb07:0::8b2c]/hooks",
    ):
        again = cli("webhooks", "add", "--tenant", "default", "--url", taken)
        assert again.exit_code == 1 and "for this URL already" in again.stderr, taken


def test_a_url_that_its_one_spelling_makes_too_long_is_refused(cli: Cli, store_url: str) -> None:
    """2000 characters as given, 2001 once `/` is added for the empty path: refused as too long
    (PostgreSQL once refused the row, which was answered as the store being unavailable)."""
    base = "http://93.184.215.14?q="
    url = base + "a" * (2000 - len(base))
    result = cli("webhooks", "add", "--tenant", "default", "--url", url)
    assert result.exit_code == 2 and "is longer than 2000 characters" in result.stderr
    assert stored(store_url) == []


def test_two_adds_of_one_url_at_once_store_one_endpoint(store_url: str, db: Database) -> None:
    """An add of the URL waits, in its own process, while another add of it is not committed
    yet; once that one commits, the waiting one is refused as a URL the tenant has already. (On
    PostgreSQL both once read "no such endpoint" and both stored one.) The first add's
    transaction is the test's own, without the store's idle timeout: the other process takes
    longer to start than that timeout allows."""
    with db.engine.connect() as conn, conn.execution_options(sqlite_begin="IMMEDIATE").begin():
        first, _ = endpoints.add(conn, "default", PUBLIC, "first", allow_private=False)
        other = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "webhooks", "add"]
            + ["--tenant", "default", "--url", PUBLIC],
            env={**os.environ, "WORKFLOW_AUTHZ_DATABASE_URL": store_url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _until(lambda: other.poll() is not None or _waits_on_a_lock(other.pid, db))
    out, err = other.communicate(timeout=WAIT)
    assert other.returncode == 1, out + err
    assert f"has endpoint {first} for this URL already" in err
    assert [(r.id, r.name) for r in stored(store_url)] == [(first, "first")]


WAIT = 60.0
"""How long a condition may take to come true before the test fails."""


def _until(condition: Callable[[], bool]) -> None:
    """Poll `condition` until it holds; fail after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def _waits_on_a_lock(pid: int, db: Database) -> bool:
    """Whether the process `pid` waits on a lock this test's transaction holds: on PostgreSQL a
    session of the store waiting on a lock; on SQLite a thread of the process asleep in SQLite's
    busy handler (the write lock)."""
    if db.engine.dialect.name == "postgresql":
        with db.read() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        return bool(waiting)
    return in_sqlite_busy_wait(pid)


def test_add_without_a_url_is_a_usage_error(cli: Cli) -> None:
    result = cli("webhooks", "add", "--tenant", "default")
    assert result.exit_code == 2 and "Missing option '--url'" in result.output


# -- list -----------------------------------------------------------------------------------------


def test_list_shows_state_last_delivery_and_backlog_of_one_tenant_or_all(
    cli: Cli, store_url: str, api: Api
) -> None:
    assert cli("tenants", "create", "north").exit_code == 0
    sis, _, _ = add(cli, "--tenant", "default", "--url", PUBLIC, "--name", "SIS")
    other, _, _ = add(cli, "--tenant", "north", "--url", PUBLIC, "--name", "North SIS")
    complete(api, "maths-7b-t1")  # one event the external systems newly see, for default
    complete(api, "maths-7c-t1")
    at = utcnow()
    change(
        store_url,
        sis,
        state="failing",
        state_reason="gave up after 3 days",
        last_attempt_at=at,
        last_status=503,
    )
    default, north = rows(cli)
    assert default == {
        "id": str(sis),
        "tenant": "default",
        "name": "SIS",
        "url": PUBLIC,
        "state": "failing",
        "last delivery": f"{iso(at)} 503",
        "backlog": "2",
        "note": "gave up after 3 days",
    }
    assert (north["id"], north["state"], north["last delivery"], north["backlog"]) == (
        str(other),
        "active",
        "never",
        "0",
    )
    assert [r["id"] for r in rows(cli, "--tenant", "north")] == [str(other)]


def test_list_shows_an_error_without_status_and_free_text_as_codes(
    cli: Cli, store_url: str
) -> None:
    endpoint_id, _, _ = add(cli, "--tenant", "default", "--url", PUBLIC)
    change(store_url, endpoint_id, last_attempt_at=utcnow(), last_error="refused\x1b[2J\nhere")
    (row,) = rows(cli)
    assert row["last delivery"].endswith(" error")
    assert row["note"] == "refusedU+001B[2JU+000Ahere"


def test_list_of_an_unknown_tenant_is_refused(cli: Cli) -> None:
    result = cli("webhooks", "list", "--tenant", "nowhere")
    assert result.exit_code == 1 and "unknown tenant 'nowhere'" in result.stderr


# -- remove, rotate-secret, retry -----------------------------------------------------------------


def test_remove_deletes_the_endpoint_once(cli: Cli, store_url: str) -> None:
    keep, _, _ = add(cli, "--tenant", "default", "--url", PUBLIC)
    gone, _, _ = add(cli, "--tenant", "default", "--url", PUBLIC + "/2", "--name", "old")
    result = cli("webhooks", "remove", str(gone))
    assert result.exit_code == 0 and f"Removed webhook endpoint {gone} (old," in result.output
    assert [r.id for r in stored(store_url)] == [keep]
    again = cli("webhooks", "remove", str(gone))
    assert again.exit_code == 1 and f"no webhook endpoint {gone}" in again.stderr


@pytest.mark.parametrize("command", ["remove", "rotate-secret", "retry"])
@pytest.mark.parametrize("given", ["abc", "0", "-1", "2147483648", "99999999999999999999", "١"])
def test_an_id_that_is_no_endpoint_number_is_a_usage_error_and_changes_nothing(
    cli: Cli, store_url: str, command: str, given: str
) -> None:
    add(cli, "--tenant", "default", "--url", PUBLIC)
    before = stored(store_url)
    result = cli("webhooks", command, "--", given)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and stored(store_url) == before


@pytest.mark.parametrize("command", ["remove", "rotate-secret", "retry"])
def test_an_unknown_endpoint_is_refused_with_exit_1(cli: Cli, command: str) -> None:
    result = cli("webhooks", command, "2147483647")
    assert result.exit_code == 1 and "no webhook endpoint 2147483647" in result.stderr


def test_rotate_secret_prints_a_new_one_and_until_when_the_old_one_still_signs(
    cli: Cli, store_url: str
) -> None:
    endpoint_id, old, _ = add(cli, "--tenant", "default", "--url", PUBLIC)
    result = cli("webhooks", "rotate-secret", str(endpoint_id), env={"WEBHOOK_SECRET_GRACE": "60"})
    assert result.exit_code == 0, result.output
    (new,) = SECRET.findall(result.output)
    row = endpoint(store_url, endpoint_id)
    assert new != old and row.secret == new and row.previous_secret == old
    assert f"Until {iso(row.previous_secret_until)} every delivery is signed" in result.output
    assert timedelta(seconds=59) < row.previous_secret_until - utcnow() <= timedelta(seconds=60)
    assert endpoints.signing_secrets(row, utcnow()) == [new, old]
    later = row.previous_secret_until + timedelta(microseconds=1)
    assert endpoints.signing_secrets(row, later) == [new]


def test_rotate_secret_without_grace_stops_the_old_secret_at_once(cli: Cli, store_url: str) -> None:
    endpoint_id, _, _ = add(cli, "--tenant", "default", "--url", PUBLIC)
    result = cli("webhooks", "rotate-secret", str(endpoint_id), env={"WEBHOOK_SECRET_GRACE": "0"})
    assert result.exit_code == 0 and "signs nothing more" in result.output
    (new,) = SECRET.findall(result.output)
    assert endpoints.signing_secrets(endpoint(store_url, endpoint_id), utcnow()) == [new]


@pytest.mark.parametrize("state", ["failing", "disabled"])
def test_retry_makes_a_failing_or_disabled_endpoint_active_from_where_it_stopped(
    cli: Cli, store_url: str, state: str
) -> None:
    endpoint_id, _, _ = add(cli, "--tenant", "default", "--url", PUBLIC)
    change(
        store_url,
        endpoint_id,
        state=state,
        state_reason="410 Gone",
        attempts=7,
        next_attempt_at=utcnow() + timedelta(hours=1),
        delivered_seq=0,
    )
    result = cli("webhooks", "retry", str(endpoint_id))
    assert result.exit_code == 0 and f"is active (was {state})" in result.output
    row = endpoint(store_url, endpoint_id)
    assert (row.state, row.state_reason, row.attempts, row.next_attempt_at) == (
        "active",
        None,
        0,
        None,
    )
    assert row.delivered_seq == 0, "its kept events are sent from where it stopped"
    active = cli("webhooks", "retry", str(endpoint_id))
    assert active.exit_code == 0 and "was active already" in active.output


# -- the endpoints module beneath the commands ----------------------------------------------------


@pytest.mark.parametrize("endpoint_id", [0, -1, 2**31, 2**63])
def test_find_answers_not_found_for_an_id_no_store_integer_holds(
    db: Database, endpoint_id: int
) -> None:
    with db.read() as conn, pytest.raises(NotFound, match=f"no webhook endpoint {endpoint_id}"):
        endpoints.find(conn, endpoint_id)


def test_a_refused_add_leaves_the_callers_transaction_as_it_was(db: Database) -> None:
    with db.write() as conn:
        first, _ = endpoints.add(conn, "default", PUBLIC, "SIS", allow_private=False)
        for url in (PUBLIC, "http://10.0.0.1/"):
            with pytest.raises((Conflict, InvalidRequest)):
                endpoints.add(conn, "default", url, None, allow_private=False)
    with db.read() as conn:
        assert [e.id for e in endpoints.listing(conn)] == [first]
