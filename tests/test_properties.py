"""Properties over generated input (hypothesis), on SQLite and PostgreSQL:
- any unknown or malformed identifier is refused with 400 naming a field, and never allowed;
- the decision for every cell equals membership of that cell in the tenant's rows (an oracle that
  shares no code with the service: a Python set built by the test);
- any sequence of creates and advances never skips a phase or passes the final one, and the
  history always equals the path taken."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from service import policy_changes
from service.db import Database
from service.policies import PolicyEngine
from tests.conftest import Api

counter = itertools.count()
ROLES = ["learner", "parent", "external_system", "mentor", "course_teacher", "headteacher"]
AREAS = {
    "behaviour": ["group_registration", "organisation_approval", "completed"],
    "assessment": ["course_registration", "organisation_approval", "completed"],
}
ACTIONS = ["view", "edit", "advance"]
CELLS = [
    (role, area, phase, action)
    for role in ROLES
    for area, phases in AREAS.items()
    for phase in phases
    for action in ACTIONS
]
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
VALID = {"role": "parent", "action": "view", "area": "behaviour", "phase": "completed"}
KNOWN = {"role": ROLES, "action": ACTIONS, "area": list(AREAS), "phase": AREAS["behaviour"]}

junk = st.one_of(
    st.text(max_size=80),
    st.integers(),
    st.none(),
    st.booleans(),
    st.lists(st.text(max_size=3), max_size=2),
    st.sampled_from(["Parent", "parent ", " view", "VIEW", "completed\n", "x" * 65, "ädmin", ""]),
)


@SETTINGS
@given(field=st.sampled_from(sorted(VALID)), value=junk)
def test_malformed_or_unknown_identifiers_are_400_never_allowed(
    api: Api, field: str, value: Any
) -> None:
    assume(not (isinstance(value, str) and value in KNOWN[field]))
    response = api.post("/authorize", VALID | {field: value})
    assert response.status_code == 400, (field, value, response.json)
    assert "allowed" not in response.json
    assert response.json["error"]["field"] in VALID


@SETTINGS
@given(cells=st.sets(st.sampled_from(CELLS)))
def test_every_decision_equals_membership_of_the_cell(
    api: Api,
    db: Database,
    policy_engine: PolicyEngine,
    make_key: Callable[[str | None], str],
    cells: set[tuple[str, str, str, str]],
) -> None:
    tenant = f"t{next(counter)}"
    with db.write() as conn:
        policy_changes.create_tenant(conn, tenant, cells, actor="hypothesis")
    requests = [
        {"id": str(i), "tenant": tenant, "role": r, "area": a, "phase": p, "action": x}
        for i, (r, a, p, x) in enumerate(CELLS)
    ]
    answer = api.post("/authorize/batch", {"requests": requests}, key=make_key(tenant))
    results = answer.json["results"]
    assert [r["allowed"] for r in results] == [cell in cells for cell in CELLS]


steps = st.lists(
    st.tuples(
        st.sampled_from(ROLES),
        st.sampled_from([None, *sorted({p for ps in AREAS.values() for p in ps})]),
    ),
    max_size=8,
)


@SETTINGS
@given(area=st.sampled_from(sorted(AREAS)), moves=steps)
def test_advances_never_skip_or_pass_the_final_phase(
    api: Api, area: str, moves: list[tuple[str, str | None]]
) -> None:
    assessment = f"seq-{next(counter)}"
    assert api.post("/assessments", {"id": assessment, "area": area}).status_code == 201
    path = [AREAS[area][0]]
    for role, expected in moves:
        body = {"role": role, "actor": "h"} | ({"expected_phase": expected} if expected else {})
        response = api.post(f"/assessments/{assessment}/advance", body)
        if response.status_code == 200:
            assert AREAS[area].index(response.json["phase"]) == AREAS[area].index(path[-1]) + 1
            path.append(response.json["phase"])
        else:
            assert response.status_code in (400, 403, 409), response.json
    state = api.get(f"/assessments/{assessment}").json
    assert state["phase"] == path[-1] and state["version"] == len(path)
    assert [h["from_phase"] for h in state["history"]] == path[:-1]
    assert [h["to_phase"] for h in state["history"]] == path[1:]
