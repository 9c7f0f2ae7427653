"""The Workflow page's matrix (spec §4, issue 3): policy cells <-> checkboxes per area, the rules a
submitted matrix must keep, and the plain words the review step uses. Pure: no app, no store."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import matrix
from service.cli import default_cells
from service.config import REPO_ROOT
from service.policies import Cell
from service.workflows import load_workflow

WORKFLOW = load_workflow(Path(REPO_ROOT) / "policy" / "workflow.toml")
BEHAVIOUR = WORKFLOW.area_by_id["behaviour"]
ASSESSMENT = WORKFLOW.area_by_id["assessment"]
DEFAULT = default_cells()


def area_cells(area_id: str) -> set[Cell]:
    return {c for c in DEFAULT if c[1] == area_id}


def default_form(area_id: str) -> dict[str, str]:
    area = WORKFLOW.area_by_id[area_id]
    return dict(matrix.form_fields(WORKFLOW, matrix.from_cells(area, DEFAULT)))


def submit(form: dict[str, str], area_id: str = "behaviour") -> matrix.AreaMatrix:
    area = WORKFLOW.area_by_id[area_id]
    draft, problems = matrix.from_form(WORKFLOW, area, form, matrix.from_cells(area, DEFAULT))
    assert problems == []
    return draft


# -- cells <-> matrix ----------------------------------------------------------------------------


def test_the_default_behaviour_matrix_reads_like_the_source_page() -> None:
    shown = matrix.from_cells(BEHAVIOUR, DEFAULT)
    assert [r.phase for r in shown.rows] == [
        "group_registration",
        "organisation_approval",
        "completed",
    ]
    assert [r.responsible for r in shown.rows] == ["mentor", "headteacher", ""]
    assert shown.row("completed").viewers >= {"learner", "parent", "external_system"}
    assert not shown.row("organisation_approval").viewers & {"learner", "parent"}
    assert shown.row("organisation_approval").editors == {"mentor", "headteacher"}


@pytest.mark.parametrize("area", ["behaviour", "assessment"])
def test_the_default_policy_survives_the_round_trip_through_the_matrix(area: str) -> None:
    shown = matrix.from_cells(WORKFLOW.area_by_id[area], DEFAULT)
    assert matrix.to_cells(shown) == area_cells(area)


@pytest.mark.parametrize("area", ["behaviour", "assessment"])
def test_submitting_the_unchanged_form_changes_nothing(area: str) -> None:
    draft = submit(default_form(area), area)
    assert matrix.changes(WORKFLOW, area_cells(area), matrix.to_cells(draft)) == []


@given(st.sets(st.sampled_from([c for c in WORKFLOW.cells() if c[1] == "assessment"])))
def test_any_set_of_an_areas_cells_round_trips(cells: set[Cell]) -> None:
    assert matrix.to_cells(matrix.from_cells(ASSESSMENT, cells)) == cells


# -- reading a submitted form ----------------------------------------------------------------------


def test_ticking_and_unticking_boxes_and_choosing_a_role_change_those_cells_only() -> None:
    form = default_form("behaviour")
    form["view-organisation_approval-parent"] = "on"
    del form["view-completed-external_system"]
    form["responsible-group_registration"] = "headteacher"
    draft = submit(form)
    assert matrix.to_cells(draft) ^ area_cells("behaviour") == {
        ("parent", "behaviour", "organisation_approval", "view"),
        ("external_system", "behaviour", "completed", "view"),
        ("mentor", "behaviour", "group_registration", "advance"),
        ("headteacher", "behaviour", "group_registration", "advance"),
    }


def test_staff_visibility_is_not_on_the_page_so_it_is_kept() -> None:
    form = default_form("behaviour")
    draft = submit({k: v for k, v in form.items() if not k.startswith("edit-")})
    assert draft.row("group_registration").viewers >= {"mentor", "headteacher"}


def test_a_staff_role_given_edit_or_advance_can_also_see_that_phase() -> None:
    form = default_form("behaviour")
    form["edit-group_registration-course_teacher"] = "on"
    form["responsible-organisation_approval"] = "course_teacher"
    draft = submit(form)
    assert "course_teacher" in draft.row("group_registration").viewers
    assert "course_teacher" in draft.row("organisation_approval").viewers


def test_fields_the_page_never_offers_are_refused() -> None:
    form = default_form("behaviour") | {
        "view-no_such_phase-parent": "on",
        "view-completed-mentor": "on",
        "responsible-completed-mentor": "on",
    }
    _, problems = matrix.from_form(WORKFLOW, BEHAVIOUR, form, matrix.from_cells(BEHAVIOUR, DEFAULT))
    assert len(problems) == 3
    assert all(p.phase is None and "not part of this page" in p.message for p in problems)


def test_an_unknown_responsible_role_is_refused_on_its_row() -> None:
    form = default_form("behaviour") | {"responsible-group_registration": "janitor"}
    _, problems = matrix.from_form(WORKFLOW, BEHAVIOUR, form, matrix.from_cells(BEHAVIOUR, DEFAULT))
    assert problems == [matrix.Problem("group_registration", "Unknown role 'janitor'.")]


# -- the rules -------------------------------------------------------------------------------------


def test_the_default_matrix_keeps_every_rule() -> None:
    for area in WORKFLOW.areas:
        assert matrix.validate(WORKFLOW, area, matrix.from_cells(area, DEFAULT)) == []


def test_a_non_final_phase_needs_a_responsible_role() -> None:
    form = default_form("behaviour") | {"responsible-organisation_approval": ""}
    problems = matrix.validate(WORKFLOW, BEHAVIOUR, submit(form))
    assert problems == [
        matrix.Problem(
            "organisation_approval", "Choose the role responsible for advancing this phase."
        )
    ]


def test_a_non_final_phase_has_only_one_responsible_role() -> None:
    cells = area_cells("behaviour") | {
        ("headteacher", "behaviour", "group_registration", "advance")
    }
    problems = matrix.validate(WORKFLOW, BEHAVIOUR, matrix.from_cells(BEHAVIOUR, cells))
    assert [p.phase for p in problems] == ["group_registration"]
    assert "Only one role can be responsible" in problems[0].message


def test_the_final_phase_has_no_responsible_role() -> None:
    form = default_form("behaviour") | {"responsible-completed": "headteacher"}
    problems = matrix.validate(WORKFLOW, BEHAVIOUR, submit(form))
    assert problems == [
        matrix.Problem("completed", "The final phase has no responsible role: nothing advances it.")
    ]


@pytest.mark.parametrize(
    "field, value",
    [("edit-completed-parent", "on"), ("responsible-group_registration", "learner")],
)
def test_audiences_never_edit_or_advance(field: str, value: str) -> None:
    form = default_form("behaviour") | {field: value}
    problems = matrix.validate(WORKFLOW, BEHAVIOUR, submit(form))
    assert any("can only see: they cannot edit or advance" in p.message for p in problems)


# -- plain words -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell, allowed, sentence",
    [
        (
            ("parent", "behaviour", "organisation_approval", "view"),
            True,
            "Parents will be able to see Behaviour in the Organisation approval phase",
        ),
        (
            ("external_system", "assessment", "completed", "view"),
            False,
            "External systems will no longer be able to see Assessment "
            "in the phase “Term assessment completed”",
        ),
        (
            ("mentor", "behaviour", "organisation_approval", "edit"),
            False,
            "Mentors will no longer be able to edit Behaviour in the Organisation approval phase",
        ),
        (
            ("headteacher", "behaviour", "group_registration", "advance"),
            True,
            "Headteachers will be responsible for advancing Behaviour "
            "from the Group registration phase",
        ),
    ],
)
def test_each_changed_cell_is_described_in_plain_words(
    cell: Cell, allowed: bool, sentence: str
) -> None:
    assert matrix.describe(WORKFLOW, cell, allowed) == sentence


def test_the_audit_page_uses_the_past_tense() -> None:
    cell = ("learner", "behaviour", "group_registration", "view")
    assert matrix.describe(WORKFLOW, cell, True, tense="past") == (
        "Learners were allowed to see Behaviour in the Group registration phase"
    )


def test_changes_are_listed_in_page_order() -> None:
    after = area_cells("behaviour") | {
        ("parent", "behaviour", "completed", "edit"),
        ("learner", "behaviour", "group_registration", "view"),
    }
    found = matrix.changes(WORKFLOW, area_cells("behaviour"), after)
    assert [c.cell for c in found] == [
        ("learner", "behaviour", "group_registration", "view"),
        ("parent", "behaviour", "completed", "edit"),
    ]
    assert all(c.after for c in found)


def test_the_review_counts_assessments_gaining_or_losing_visibility_per_audience() -> None:
    after = (area_cells("behaviour") - {("parent", "behaviour", "completed", "view")}) | {
        ("learner", "behaviour", "organisation_approval", "view"),
        ("parent", "behaviour", "organisation_approval", "view"),
        ("mentor", "behaviour", "completed", "edit"),
    }
    found = matrix.changes(WORKFLOW, area_cells("behaviour"), after)
    counts = {"organisation_approval": 4, "completed": 7}
    assert matrix.impacts(WORKFLOW, BEHAVIOUR, found, counts) == [
        matrix.Impact(
            "organisation_approval",
            "Organisation approval phase",
            4,
            (
                matrix.Visibility("Learner", "gains", 4),
                matrix.Visibility("Parent", "gains", 4),
                matrix.Visibility("External systems", "unchanged", 0),
            ),
        ),
        matrix.Impact(
            "completed",
            "Term behaviour assessment completed",
            7,
            (
                matrix.Visibility("Learner", "unchanged", 0),
                matrix.Visibility("Parent", "loses", 7),
                matrix.Visibility("External systems", "unchanged", 0),
            ),
        ),
    ]
