"""The policy seam (service/policies/): the model is checked, every cell of the default matrix is
decided as the spec's table says and as casbin itself decides, the cache follows versions and is
bounded, and a tenant's rows can be neither empty nor duplicated. Writes: test_policy_changes.py."""

from __future__ import annotations

from pathlib import Path

import casbin
import pytest
from sqlalchemy import func, select

from service import policy_changes
from service.config import REPO_ROOT, load_config
from service.db import Database
from service.errors import InvalidRequest, NotFound
from service.policies import ModelError, PolicyEngine, load_model
from service.policies.store import tenant_cells
from tests.cells import CELL_IDS, MATRIX
from tests.conftest import policy_version

MODEL = REPO_ROOT / "model.conf"


def test_default_matrix_has_33_rows(engine: PolicyEngine) -> None:
    """The spec's 29 rows plus the headteacher's 4 reopen rows (issue 7)."""
    with engine.db.read() as conn:
        assert len(tenant_cells(conn, "default")) == 33
    assert sum(allowed for *_, allowed in MATRIX) == 33 and len(MATRIX) == 144


@pytest.mark.parametrize(("role", "area", "phase", "action", "allowed"), MATRIX, ids=CELL_IDS)
def test_every_default_cell(
    engine: PolicyEngine, role: str, area: str, phase: str, action: str, allowed: bool
) -> None:
    decision = engine.decide("default", role, area, phase, action, version=policy_version(engine))
    assert decision.allowed is allowed
    assert decision.rule == (("default", role, area, phase, action) if allowed else None)
    assert decision.policy_version == 1
    assert (role in decision.reason) and (phase in decision.reason)


def test_decisions_equal_casbin_enforce_on_every_cell(engine: PolicyEngine, tmp_path: Path) -> None:
    enforcer = casbin.Enforcer(str(MODEL), str(REPO_ROOT / "policy" / "policy.csv"))
    version = policy_version(engine)
    for role, area, phase, action, _ in MATRIX:
        ours = engine.decide("default", role, area, phase, action, version=version).allowed
        assert ours is enforcer.enforce("default", role, area, phase, action), (
            role,
            area,
            phase,
            action,
        )
    assert enforcer.enforce("other", "parent", "behaviour", "completed", "view") is False


def test_deny_reason_says_from_which_phase_the_role_would_be_allowed(engine: PolicyEngine) -> None:
    reason = engine.decide(
        "default", "parent", "behaviour", "group_registration", "view", version=1
    ).reason
    assert reason.startswith("Denied: parent may not view behaviour in phase group_registration")
    assert "from phase completed (Term behaviour assessment completed)" in reason


def test_deny_reason_for_a_role_never_allowed_and_for_the_final_phase(engine: PolicyEngine) -> None:
    never = engine.decide("default", "learner", "assessment", "completed", "edit", version=1)
    assert never.reason.startswith("Denied: learner may not edit assessment in phase completed")
    assert "lets learner edit assessment in no phase" in never.reason
    final = engine.decide("default", "headteacher", "assessment", "completed", "advance", version=1)
    assert "final phase" in final.reason


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("role", dict(role="janitor")),
        ("action", dict(action="delete")),
        ("area", dict(area="attendance")),
        ("phase", dict(phase="course_registration")),  # a phase of the other area
    ],
)
def test_unknown_identifiers_are_refused_naming_the_field(
    engine: PolicyEngine, field: str, kwargs: dict[str, str]
) -> None:
    question = dict(role="parent", area="behaviour", phase="completed", action="view") | kwargs
    with pytest.raises(InvalidRequest) as error:
        engine.decide("default", version=1, **question)
    assert error.value.field == field


def test_unknown_tenant_is_not_found(engine: PolicyEngine) -> None:
    with pytest.raises(NotFound):
        engine.decide("nowhere", "parent", "behaviour", "completed", "view", version=1)


@pytest.mark.parametrize(
    "matcher",
    [
        "regexMatch(r.role, p.role) && r.tenant == p.tenant",
        "r.tenant == p.tenant && r.role == p.role && r.area == p.area && r.phase == p.phase",
        "r.tenant == p.tenant || r.role == p.role && r.area == p.area && r.phase == p.phase"
        " && r.action == p.action",
        "eval(p.role)",
    ],
)
def test_models_other_than_exact_equality_are_refused(tmp_path: Path, matcher: str) -> None:
    text = MODEL.read_text().split("[matchers]")[0] + f"[matchers]\nm = {matcher}\n"
    path = tmp_path / "model.conf"
    path.write_text(text)
    with pytest.raises(ModelError):
        load_model(path)


def test_cache_reloads_when_the_version_changes_elsewhere(sqlite_url: str) -> None:
    reader = PolicyEngine.from_settings(Database(sqlite_url), load_config())
    writer = PolicyEngine.from_settings(Database(sqlite_url), load_config())
    assert reader.decide("default", "parent", "behaviour", "completed", "view", version=1).allowed
    with writer.db.write() as conn:
        policy_changes.save(conn, writer, "default", set(), actor="w", area="behaviour")
    assert not reader.decide(
        "default", "parent", "behaviour", "completed", "view", version=2
    ).allowed


def test_cache_is_bounded_least_recently_used_first(engine: PolicyEngine) -> None:
    with engine.db.write() as conn:
        for tenant in ("t1", "t2", "t3"):
            policy_changes.create_tenant(
                conn, tenant, [("parent", "behaviour", "completed", "view")], actor="t"
            )
    for tenant in ("t1", "t2", "t3", "t2"):
        assert engine.decide(tenant, "parent", "behaviour", "completed", "view", version=1).allowed
    assert engine.cached_tenants() == ["t3", "t2"]


def test_rows_cannot_be_empty_or_duplicated(engine: PolicyEngine) -> None:
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from service.policies.store import RULES

    row = dict(ptype="p", v0="default", v1="parent", v2="behaviour", v3="completed", v4="view")
    for bad in (row, row | {"v3": ""}):
        with pytest.raises(IntegrityError), engine.db.write() as conn:
            conn.execute(insert(RULES).values(**bad))
    with engine.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(RULES)).scalar_one() == 33
