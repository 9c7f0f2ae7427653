"""Changing a tenant's policy (service/policy_changes.py): one transaction bumps the version, audits
every changed cell and changes the next decision; a stale version, an empty change or a failure
mid-write leave the policy as it was; one area's save leaves the other area and other tenants
alone."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from service import policy_changes
from service.db import Database
from service.errors import Conflict
from service.models import PolicyChange
from service.policies import PolicyEngine
from service.policies import store as rows
from service.policies.store import tenant_cells
from tests.conftest import policy_version


def _cells(engine: PolicyEngine, tenant: str = "default") -> set[tuple[str, str, str, str]]:
    with engine.db.read() as conn:
        return set(tenant_cells(conn, tenant))


def test_replace_bumps_version_audits_cells_and_changes_decisions(engine: PolicyEngine) -> None:
    assert not engine.decide(
        "default", "parent", "behaviour", "organisation_approval", "view", version=1
    ).allowed
    cells = _cells(engine) | {("parent", "behaviour", "organisation_approval", "view")}
    cells -= {("learner", "behaviour", "completed", "view")}
    with engine.db.write() as conn:
        result = policy_changes.save(
            conn, engine, "default", cells, actor="ada", area="behaviour", expected_version=1
        )
    assert result.version == 2 and len(result.changes) == 2
    assert engine.decide(
        "default", "parent", "behaviour", "organisation_approval", "view", version=2
    ).allowed
    assert not engine.decide(
        "default", "learner", "behaviour", "completed", "view", version=2
    ).allowed
    with engine.db.read() as conn:
        audit = conn.execute(select(PolicyChange).order_by(PolicyChange.id)).all()
    assert [(a.role, a.phase, a.before, a.after, a.actor, a.version) for a in audit] == [
        ("parent", "organisation_approval", False, True, "ada", 2),
        ("learner", "completed", True, False, "ada", 2),
    ]


def test_replace_from_a_stale_version_changes_nothing(engine: PolicyEngine) -> None:
    before = _cells(engine)
    with engine.db.write() as conn:
        policy_changes.save(
            conn,
            engine,
            "default",
            before - {("parent", "behaviour", "completed", "view")},
            actor="a",
        )
    with pytest.raises(Conflict), engine.db.write() as conn:
        policy_changes.save(conn, engine, "default", set(), actor="b", expected_version=1)
    assert _cells(engine) == before - {("parent", "behaviour", "completed", "view")}
    assert policy_version(engine) == 2


def test_replace_without_changes_keeps_thepolicy_version(engine: PolicyEngine) -> None:
    with engine.db.write() as conn:
        result = policy_changes.save(conn, engine, "default", _cells(engine), actor="a")
    assert result.version == 1 and result.changes == ()


def test_replacing_one_area_leaves_the_other_area_and_other_tenants_alone(
    engine: PolicyEngine,
) -> None:
    with engine.db.write() as conn:
        policy_changes.create_tenant(conn, "north", _cells(engine), actor="t")
        policy_changes.save(conn, engine, "default", set(), actor="a", area="behaviour")
    assert {c[1] for c in _cells(engine)} == {"assessment"}
    assert len(_cells(engine, "north")) == 33


def test_a_failure_mid_write_leaves_the_previous_policy(engine: PolicyEngine) -> None:
    before = _cells(engine)
    with pytest.raises(RuntimeError), engine.db.write() as conn:
        policy_changes.save(conn, engine, "default", set(), actor="a")
        raise RuntimeError("crash after the rows were replaced, before commit")
    assert _cells(engine) == before and policy_version(engine) == 1


def test_a_tenant_created_by_a_concurrent_writer_is_a_conflict_not_a_failure(db: Database) -> None:
    """The insert itself refuses an existing tenant (the race between the check and the insert
    that two `tenants create` can run on PostgreSQL), and the transaction stays usable."""
    with db.write() as conn:
        with pytest.raises(Conflict, match="tenant 'default' already exists"):
            rows.insert_tenant(conn, "default", "second writer")
        assert rows.current_version(conn, "default") == 1
