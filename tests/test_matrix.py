"""The Workflow page's matrix (spec §4, issues 3 and 7): policy cells <-> checkboxes per area, the
rules a submitted matrix must keep, and the plain words the review step uses; the columns follow
the definition's actions (a definition without `reopen` has no reopen column). Pure: no app, no
store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import matrix
from service.checker.policy import check_policy_text
from service.cli import default_cells
from service.config import REPO_ROOT
from service.policy_rules import Finding
from service.workflows import Cell, Workflow, load_workflow

WORKFLOW = load_workflow(Path(REPO_ROOT) / "policy" / "workflow.toml")
BEHAVIOUR = WORKFLOW.area_by_id["behaviour"]
ASSESSMENT = WORKFLOW.area_by_id["assessment"]
DEFAULT = default_cells()
WITHOUT_REOPEN = dataclasses.replace(WORKFLOW, actions=("view", "edit", "advance"))


def worded(problems: list[Finding], workflow: Workflow = WORKFLOW) -> list[tuple[str | None, str]]:
    """Each finding as the page shows it: its phase (None: the whole form) and its words."""
    return [(p.phase, matrix.message(workflow, p)) for p in problems]


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
    assert shown.row("completed").holders("view") >= {"learner", "parent", "external_system"}
    assert not shown.row("organisation_approval").holders("view") & {"learner", "parent"}
    assert shown.row("organisation_approval").holders("edit") == {"mentor", "headteacher"}
    assert [r.holders("reopen") for r in shown.rows] == [set(), {"headteacher"}, {"headteacher"}]


def test_the_page_has_a_column_per_action_of_the_definition() -> None:
    assert [c.action for c in matrix.columns(WORKFLOW)] == ["view", "advance", "edit", "reopen"]
    assert [c.action for c in matrix.columns(WITHOUT_REOPEN)] == ["view", "advance", "edit"]


@pytest.mark.parametrize(
    "action, phases",
    [
        ("view", ["group_registration", "organisation_approval", "completed"]),
        ("advance", ["group_registration", "organisation_approval"]),
        ("reopen", ["organisation_approval", "completed"]),
    ],
)
def test_no_select_on_the_final_phase_and_no_reopen_on_the_first(
    action: str, phases: list[str]
) -> None:
    column = next(c for c in matrix.COLUMNS if c.action == action)
    assert [p.id for p in BEHAVIOUR.phases if column.offered(BEHAVIOUR, p.id)] == phases


@pytest.mark.parametrize("area", ["behaviour", "assessment"])
def test_the_default_policy_survives_the_round_trip_through_the_matrix(area: str) -> None:
    shown = matrix.from_cells(WORKFLOW.area_by_id[area], DEFAULT)
    assert matrix.to_cells(shown) == area_cells(area)


@pytest.mark.parametrize("area", ["behaviour", "assessment"])
def test_submitting_the_unchanged_form_changes_nothing(area: str) -> None:
    draft = submit(default_form(area), area)
    assert WORKFLOW.changes(area_cells(area), matrix.to_cells(draft)) == ()


@given(st.sets(st.sampled_from([c for c in WORKFLOW.cells() if c[1] == "assessment"])))
def test_any_set_of_an_areas_cells_round_trips(cells: set[Cell]) -> None:
    assert matrix.to_cells(matrix.from_cells(ASSESSMENT, cells)) == cells


def test_a_definition_without_reopen_round_trips_its_own_cells() -> None:
    cells = {c for c in area_cells("behaviour") if c[3] != "reopen"}
    shown = matrix.from_cells(BEHAVIOUR, cells)
    fields = dict(matrix.form_fields(WITHOUT_REOPEN, shown))
    assert not [name for name in fields if name.startswith("reopen-")]
    draft, problems = matrix.from_form(WITHOUT_REOPEN, BEHAVIOUR, fields, shown)
    assert problems == [] and matrix.to_cells(draft) == cells
    assert matrix.validate(WITHOUT_REOPEN, BEHAVIOUR, draft) == []


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


def test_ticking_and_unticking_reopen_boxes_changes_those_cells_only() -> None:
    form = default_form("behaviour")
    form["reopen-organisation_approval-mentor"] = "on"
    del form["reopen-completed-headteacher"]
    draft = submit(form)
    assert matrix.to_cells(draft) ^ area_cells("behaviour") == {
        ("mentor", "behaviour", "organisation_approval", "reopen"),
        ("headteacher", "behaviour", "completed", "reopen"),
    }


def test_staff_visibility_is_not_on_the_page_so_it_is_kept() -> None:
    form = default_form("behaviour")
    draft = submit({k: v for k, v in form.items() if not k.startswith(("edit-", "reopen-"))})
    assert draft.row("group_registration").holders("view") >= {"mentor", "headteacher"}
    assert "headteacher" in draft.row("completed").holders("view")


def test_a_staff_role_given_edit_advance_or_reopen_can_also_see_that_phase() -> None:
    form = default_form("behaviour")
    form["edit-group_registration-course_teacher"] = "on"
    form["responsible-organisation_approval"] = "course_teacher"
    form["reopen-completed-course_teacher"] = "on"
    draft = submit(form)
    for phase in ("group_registration", "organisation_approval", "completed"):
        assert "course_teacher" in draft.row(phase).holders("view")


def test_a_definition_without_reopen_refuses_reopen_fields() -> None:
    current = matrix.from_cells(BEHAVIOUR, DEFAULT)
    form = dict(matrix.form_fields(WITHOUT_REOPEN, current)) | {"reopen-completed-mentor": "on"}
    _, problems = matrix.from_form(WITHOUT_REOPEN, BEHAVIOUR, form, current)
    assert worded(problems, WITHOUT_REOPEN) == [
        (None, "The form field 'reopen-completed-mentor' is not part of this page.")
    ]


def test_fields_the_page_never_offers_are_refused() -> None:
    form = default_form("behaviour") | {
        "view-no_such_phase-parent": "on",
        "view-completed-mentor": "on",
        "responsible-completed-mentor": "on",
        "reopen-completed": "on",
        "advance-completed-mentor": "on",
    }
    _, problems = matrix.from_form(WORKFLOW, BEHAVIOUR, form, matrix.from_cells(BEHAVIOUR, DEFAULT))
    assert len(problems) == 5
    assert all(
        phase is None and "not part of this page" in text for phase, text in worded(problems)
    )


def test_an_unknown_responsible_role_is_refused_on_its_row() -> None:
    form = default_form("behaviour") | {"responsible-group_registration": "janitor"}
    _, problems = matrix.from_form(WORKFLOW, BEHAVIOUR, form, matrix.from_cells(BEHAVIOUR, DEFAULT))
    assert worded(problems) == [("group_registration", "Unknown role 'janitor'.")]


# -- the rules -------------------------------------------------------------------------------------


def test_the_default_matrix_keeps_every_rule() -> None:
    for area in WORKFLOW.areas:
        assert matrix.validate(WORKFLOW, area, matrix.from_cells(area, DEFAULT)) == []


def test_a_non_final_phase_needs_a_responsible_role() -> None:
    form = default_form("behaviour") | {"responsible-organisation_approval": ""}
    problems = matrix.validate(WORKFLOW, BEHAVIOUR, submit(form))
    assert worded(problems) == [
        ("organisation_approval", "Choose the role responsible for advancing this phase.")
    ]


def test_a_non_final_phase_has_only_one_responsible_role() -> None:
    cells = area_cells("behaviour") | {
        ("headteacher", "behaviour", "group_registration", "advance")
    }
    problems = matrix.validate(WORKFLOW, BEHAVIOUR, matrix.from_cells(BEHAVIOUR, cells))
    assert worded(problems) == [
        (
            "group_registration",
            "Only one role can be responsible; this phase has Headteacher, Mentor.",
        )
    ]


def test_the_final_phase_has_no_responsible_role() -> None:
    form = default_form("behaviour") | {"responsible-completed": "headteacher"}
    problems = matrix.validate(WORKFLOW, BEHAVIOUR, submit(form))
    assert worded(problems) == [
        ("completed", "The final phase has no responsible role: nothing advances it.")
    ]


@pytest.mark.parametrize(
    "field, value",
    [
        ("edit-completed-parent", "on"),
        ("responsible-group_registration", "learner"),
        ("reopen-completed-external_system", "on"),
    ],
)
def test_audiences_never_edit_advance_or_reopen(field: str, value: str) -> None:
    form = default_form("behaviour") | {field: value}
    phase = field.split("-")[1]
    problems = worded(matrix.validate(WORKFLOW, BEHAVIOUR, submit(form)))
    assert [where for where, text in problems if "can only see" in text] == [phase]
    assert any("can only see: they cannot edit, advance or reopen." in text for _, text in problems)


def test_without_reopen_the_audience_rule_names_the_actions_there_are() -> None:
    cells = {c for c in area_cells("behaviour") if c[3] != "reopen"}
    cells.add(("parent", "behaviour", "completed", "edit"))
    problems = matrix.validate(WITHOUT_REOPEN, BEHAVIOUR, matrix.from_cells(BEHAVIOUR, cells))
    assert worded(problems, WITHOUT_REOPEN) == [
        ("completed", "Parents can only see: they cannot edit or advance.")
    ]


def test_the_first_phase_cannot_be_reopened() -> None:
    form = default_form("behaviour") | {"reopen-group_registration-headteacher": "on"}
    problems = matrix.validate(WORKFLOW, BEHAVIOUR, submit(form))
    assert worded(problems) == [
        ("group_registration", "The first phase cannot be reopened: there is no phase before it.")
    ]


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
        (
            ("headteacher", "behaviour", "completed", "reopen"),
            True,
            "Headteachers will be able to reopen Behaviour from the phase "
            "“Term behaviour assessment completed” (back to the Organisation approval phase)",
        ),
        (
            ("headteacher", "assessment", "organisation_approval", "reopen"),
            False,
            "Headteachers will no longer be able to reopen Assessment from the Organisation "
            "approval phase (back to the Course registration phase)",
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
    reopen = ("mentor", "behaviour", "organisation_approval", "reopen")
    assert matrix.describe(WORKFLOW, reopen, False, tense="past") == (
        "Mentors were no longer allowed to reopen Behaviour from the Organisation approval "
        "phase (back to the Group registration phase)"
    )


def test_changes_are_listed_in_page_order() -> None:
    after = area_cells("behaviour") | {
        ("mentor", "behaviour", "completed", "reopen"),
        ("parent", "behaviour", "completed", "edit"),
        ("learner", "behaviour", "group_registration", "view"),
        ("mentor", "behaviour", "completed", "edit"),
    }
    found = WORKFLOW.changes(area_cells("behaviour"), after)
    assert [c.cell for c in found] == [
        ("learner", "behaviour", "group_registration", "view"),
        ("parent", "behaviour", "completed", "edit"),
        ("mentor", "behaviour", "completed", "edit"),
        ("mentor", "behaviour", "completed", "reopen"),
    ]
    assert all(c.after for c in found)


def test_the_review_counts_assessments_gaining_or_losing_visibility_per_audience() -> None:
    after = (area_cells("behaviour") - {("parent", "behaviour", "completed", "view")}) | {
        ("learner", "behaviour", "organisation_approval", "view"),
        ("parent", "behaviour", "organisation_approval", "view"),
        ("mentor", "behaviour", "completed", "edit"),
    }
    found = WORKFLOW.changes(area_cells("behaviour"), after)
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


# -- one rule set: the form refuses what the checker refuses -------------------------------------


@given(st.sets(st.sampled_from([c for c in WORKFLOW.cells() if c[1] == "behaviour"])))
def test_the_form_and_the_checker_apply_the_same_rules(cells: set[Cell]) -> None:
    rows = sorted(cells | area_cells("assessment"), key=WORKFLOW.display_order)
    text = "".join(f"p, default, {', '.join(cell)}\n" for cell in rows)
    checked = {p.code for p in check_policy_text(text, "policy.csv", WORKFLOW)[1]}
    found = matrix.validate(WORKFLOW, BEHAVIOUR, matrix.from_cells(BEHAVIOUR, cells))
    assert {f.code for f in found} == checked
