"""Two real `workflow-authz serve --workers 1` processes on one PostgreSQL database: a policy change
committed through either the admin form of one of them or the store from a third process is the
policy of the very next answer of both -- no polling, the design is exact -- and servers whose
database connections were killed recover by themselves."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from bench.propagation import AdminFormWriter, StoreWriter, Target, ask, prepare_target
from bench.server import Server, create_admin, create_api_key, serving, wait_ready
from service.config import load_config
from service.workflows import Workflow, load_workflow
from tests.conftest import PG_ADMIN_URL

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class Pair:
    """Servers A and B on one database, an API key, an admin login and the cell to change."""

    a: Server
    b: Server
    url: str
    key: str
    login: tuple[str, str]
    target: Target
    workflow: Workflow


@pytest.fixture
def pair(pg_url: str) -> Iterator[Pair]:
    workflow = load_workflow(Path(load_config()["POLICY_DIR"]) / "workflow.toml")
    target = prepare_target(pg_url, workflow)
    key, login = create_api_key(pg_url), create_admin(pg_url)
    with serving(pg_url, workers=1, wait=False) as a, serving(pg_url, workers=1, wait=False) as b:
        wait_ready(a)  # both start at once; each is then polled on /healthz
        wait_ready(b)
        yield Pair(a, b, pg_url, key, login, target, workflow)


def _answers(pair: Pair) -> tuple[tuple[bool, int], tuple[bool, int]]:
    """A's and B's answer (allowed, policy version) to the target question, B first."""
    return ask(pair.b, pair.key, pair.target), ask(pair.a, pair.key, pair.target)


def _terminate_connections(url: str) -> int:
    """Kill every PostgreSQL backend connected to the database; how many there were."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": make_url(url).database},
            ).all()
        return len(killed)
    finally:
        admin.dispose()


def test_a_save_on_one_servers_admin_form_is_the_next_answer_of_both(pair: Pair) -> None:
    assert _answers(pair) == ((False, 1), (False, 1))  # both processes now hold version 1
    writer = AdminFormWriter(pair.a, pair.url, pair.workflow, pair.target, pair.login)
    try:
        for allowed in (True, False, True):
            version = writer.save(allowed)
            assert _answers(pair) == ((allowed, version), (allowed, version))
    finally:
        writer.close()


def test_a_write_from_a_third_process_is_the_next_answer_of_both(pair: Pair) -> None:
    assert _answers(pair) == ((False, 1), (False, 1))
    writer = StoreWriter(pair.url, pair.target)
    try:
        for allowed in (True, False):
            version = writer.save(allowed)
            assert _answers(pair) == ((allowed, version), (allowed, version))
    finally:
        writer.close()


def test_servers_recover_by_themselves_after_their_connections_are_killed(pair: Pair) -> None:
    assert _answers(pair) == ((False, 1), (False, 1))  # each server holds a pooled connection
    assert _terminate_connections(pair.url) >= 2
    writer = StoreWriter(pair.url, pair.target)
    try:
        version = writer.save(True)
    finally:
        writer.close()
    assert _answers(pair) == ((True, version), (True, version))
    assert pair.a.request("GET", "/healthz").status == 200
    assert pair.b.request("GET", "/healthz").status == 200
