"""Decision test cases (service/casetests.py), issue 4 item 2.

Checks that the shipped cases cover every cell of the default matrix and pass (the cells follow
the definition's actions: 108 with view, edit, advance; 144 with reopen); how the cases
table is read (comments, quoted names, malformed rows located by line); that failures show
expected vs actual and the matching rule; coverage per tenant; the JUnit XML report; and, as a
differential test, that the service's decision function over each tenant's rows (the one
`workflow-authz test` runs) decides exactly as casbin does with model.conf, for the default
policy (read by casbin's own file adapter) and for random policies.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import casbin
from hypothesis import given, settings
from hypothesis import strategies as st

from service.casetests import (
    MAX_UNCOVERED_SHOWN,
    Case,
    Coverage,
    Outcome,
    coverage,
    decision_from_rows,
    junit_xml,
    parse_cases_text,
    read_cases,
    run_cases,
    summary,
    text_report,
)
from service.checker.rows import parse_policy_text
from service.workflows import Row, load_workflow

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "model.conf"
POLICY = REPO / "policy" / "policy.csv"
WORKFLOW = load_workflow(REPO / "policy" / "workflow.toml")
HEADER = "name,tenant,role,area,phase,action,expect\n"
CELLS = len(WORKFLOW.cells())
"""Every (role, area-phase, action) cell of the shipped definition: 108, or 144 with reopen."""
DEFAULT_ROWS = [line.row for line in parse_policy_text(POLICY.read_text(), str(POLICY))[0]]


def case(name: str, request: Row, expect: bool) -> Case:
    return Case(name, request, expect, "cases.csv", 3)


# -- the shipped cases -----------------------------------------------------------------------


def test_the_shipped_cases_cover_every_cell_of_the_default_matrix_and_pass() -> None:
    cases, problems = read_cases([REPO / "policy" / "cases.csv"], WORKFLOW)
    assert problems == []
    outcomes = run_cases(cases, decision_from_rows(DEFAULT_ROWS, WORKFLOW))
    cover = coverage(cases, WORKFLOW)
    assert (cover.total, cover.uncovered) == (CELLS, ())
    assert summary(outcomes, cover) == (
        f"{CELLS} cases, {CELLS} passed, 0 failed; coverage 100.0% of {CELLS} cells"
    )


# -- reading the cases table -----------------------------------------------------------------


def test_cases_are_read_with_comments_quoted_names_and_spaces_around_fields() -> None:
    text = (
        "# the header may follow comments\n\n"
        + HEADER
        + '"parent, after completion",default, parent ,behaviour,completed,view,allow\n'
        + "# a comment between cases\n"
        + "mentor may not advance completed,default,mentor,behaviour,completed,advance,deny\n"
    )
    cases, problems = parse_cases_text(text, "cases.csv", WORKFLOW)
    assert problems == []
    assert [(c.name, c.request, c.expect, c.line) for c in cases] == [
        (
            "parent, after completion",
            ("default", "parent", "behaviour", "completed", "view"),
            True,
            4,
        ),
        (
            "mentor may not advance completed",
            ("default", "mentor", "behaviour", "completed", "advance"),
            False,
            6,
        ),
    ]


def test_malformed_rows_are_located_and_the_good_ones_kept() -> None:
    text = (
        HEADER
        + "ok,default,parent,behaviour,completed,view,allow\n"
        + '"unclosed,default,parent,behaviour,completed,view,allow\n'
        + "bad phase,default,parent,behaviour,course_registration,view,deny\n"
        + "bad tenant,Default,parent,behaviour,completed,view,deny\n"
        + "maybe,default,parent,behaviour,completed,view,Allow\n"
    )
    cases, problems = parse_cases_text(text, "cases.csv", WORKFLOW)
    assert [c.name for c in cases] == ["ok"]
    assert [(p.line, p.column, p.code) for p in problems] == [
        (3, 1, "WA402"),
        (4, 36, "WA405"),
        (5, 12, "WA405"),
        (6, 47, "WA404"),
    ]


def test_names_are_unique_across_case_files(tmp_path: Path) -> None:
    row = "same,default,parent,behaviour,completed,view,allow\n"
    (tmp_path / "a_cases.csv").write_text(HEADER + row)
    (tmp_path / "b_cases.csv").write_text(HEADER + row)
    _, problems = read_cases(sorted(tmp_path.iterdir()), WORKFLOW)
    assert [(Path(p.path).name, p.line, p.code) for p in problems] == [("b_cases.csv", 2, "WA406")]
    assert "a_cases.csv:2" in problems[0].message


# -- running and reporting -------------------------------------------------------------------

ALLOWED: Row = ("default", "parent", "behaviour", "completed", "view")
DENIED: Row = ("default", "parent", "behaviour", "completed", "edit")


def test_a_failure_shows_expected_actual_and_the_matching_rule() -> None:
    outcomes = run_cases(
        [case("parent may not view", ALLOWED, False), case("parent may edit", DENIED, True)],
        decision_from_rows([ALLOWED], WORKFLOW),
    )
    report = text_report(outcomes, coverage([], WORKFLOW))
    assert report.splitlines() == [
        "FAIL cases.csv:3: parent may not view: expected deny, got allow "
        "(matched rule `p, default, parent, behaviour, completed, view`)",
        "FAIL cases.csv:3: parent may edit: expected allow, got deny (no rule matched)",
        "2 cases, 0 passed, 2 failed; coverage 0.0% of 0 cells",
    ]


def test_coverage_counts_the_cells_of_every_tenant_the_cases_name() -> None:
    cases = [case("a", ALLOWED, True), case("b", ("north", *ALLOWED[1:]), False)]
    cover = coverage(cases + cases, WORKFLOW)
    assert (cover.total, cover.covered) == (2 * CELLS, 2)
    assert cover.percent == 100 * 2 / (2 * CELLS)
    assert ("default", "learner", "behaviour", "group_registration", "view") in cover.uncovered


def test_coverage_follows_the_actions_of_the_definition() -> None:
    three = dataclasses.replace(WORKFLOW, actions=("view", "edit", "advance"))
    four = dataclasses.replace(WORKFLOW, actions=("view", "edit", "advance", "reopen"))
    cases = [case("a", ALLOWED, True)]
    assert (coverage(cases, three).total, coverage(cases, four).total) == (108, 144)
    reopen = ("default", "headteacher", "assessment", "completed", "reopen")
    assert reopen in coverage(cases, four).uncovered
    assert reopen not in coverage(cases, three).uncovered


def test_uncovered_cells_are_listed_only_when_asked() -> None:
    cover = coverage([case("a", ALLOWED, True)], WORKFLOW)
    outcomes = run_cases([case("a", ALLOWED, True)], decision_from_rows([ALLOWED], WORKFLOW))
    assert len(text_report(outcomes, cover).splitlines()) == 1
    listed = text_report(outcomes, cover, uncovered=True).splitlines()
    assert listed[0] == "uncovered cell: default, learner, behaviour, group_registration, view"
    assert listed[-2] == f"... and {CELLS - 1 - MAX_UNCOVERED_SHOWN} more uncovered cells"


def test_junit_xml_has_a_testcase_per_case_and_a_failure_per_failed_case() -> None:
    outcomes = [
        Outcome(case("passes", ALLOWED, True), True, ALLOWED),
        Outcome(case("fails \x07 loudly", DENIED, True), False, None),
    ]
    root = ET.fromstring(junit_xml(outcomes, Coverage(108, ())))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    testcases = suite.findall("testcase")
    assert [t.get("name") for t in testcases] == ["passes", "fails \ufffd loudly"]
    failure = testcases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "expected allow, got deny (no rule matched)"
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties == {"coverage": "100.0", "cells": "108"}


# -- the decision function decides exactly as casbin does with model.conf --------------------

TENANTS = ["default", "north"]


def requests() -> list[Row]:
    """Every cell of the matrix for two tenants (and one without rows), plus requests naming an
    unknown role, area or phase."""
    cells = [(tenant, *cell) for tenant in [*TENANTS, "nowhere"] for cell in WORKFLOW.cells()]
    return cells + [
        ("default", "Parent", "behaviour", "completed", "view"),
        ("default", "parent", "conduct", "completed", "view"),
        ("default", "parent", "behaviour", "someday", "view"),
    ]


def assert_same_decisions(enforcer: casbin.Enforcer, rows: list[Row]) -> None:
    decide = decision_from_rows(rows, WORKFLOW)
    for request in requests():
        allowed, rule = enforcer.enforce_ex(*request)
        assert decide(*request) == (allowed, rule or None), request


def test_the_default_policy_decides_as_casbin_reading_the_same_file() -> None:
    assert_same_decisions(casbin.Enforcer(str(MODEL), str(POLICY)), DEFAULT_ROWS)


ROWS = st.lists(
    st.tuples(
        st.sampled_from(TENANTS),
        st.sampled_from([r.id for r in WORKFLOW.roles]),
        st.sampled_from([a.id for a in WORKFLOW.areas]),
        st.sampled_from(sorted({p.id for a in WORKFLOW.areas for p in a.phases})),
        st.sampled_from(list(WORKFLOW.actions)),
    ),
    unique=True,
    max_size=40,
)


@settings(max_examples=25, deadline=None)
@given(rows=ROWS)
def test_random_policies_decide_as_casbin(rows: list[Row]) -> None:
    enforcer = casbin.Enforcer(str(MODEL))
    if rows:
        enforcer.add_policies([list(row) for row in rows])
    assert_same_decisions(enforcer, rows)
