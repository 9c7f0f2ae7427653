"""The policy checker (service/checker/), spec §2, issue 4 item 1 and issue 7 item 2.

Checks that the repository's own model, definition and policy are clean; that every problem code
is documented and has a fixture folder; how policy rows are parsed and which spacing is accepted;
which models, definitions and policies are refused and where each problem is located; the
optional fourth action `reopen` (never on an area's first phase, never for an audience); the three
output formats; and that garbage bytes, empty files and huge files are reported, never raised.
(tests/test_policy_cli.py runs every fixture folder through `workflow-authz check`.)
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.checker.codes import CODES
from service.checker.definition import check_definition_text
from service.checker.files import check_files, collect
from service.checker.policy import check_policy_text
from service.checker.problems import Problem, render
from service.checker.rows import PolicyLine, parse_policy_text
from service.checker.sources import MAX_BYTES, decode_source, read_source
from service.policies.model import check_model_text
from service.workflows import BASE_ACTIONS as ACTIONS
from service.workflows import Workflow, load_workflow

REPO = Path(__file__).resolve().parent.parent
POLICIES = Path(__file__).resolve().parent / "policies"
MODEL = (REPO / "model.conf").read_text(encoding="utf-8")
DEFINITION = (REPO / "policy" / "workflow.toml").read_text(encoding="utf-8")
WORKFLOW = load_workflow(REPO / "policy" / "workflow.toml")
SHIPPED_ROWS = (REPO / "policy" / "policy.csv").read_text(encoding="utf-8").count("\np, ")
MINIMAL = """\
p, default, mentor, behaviour, group_registration, advance
p, default, headteacher, behaviour, organisation_approval, advance
p, default, course_teacher, assessment, course_registration, advance
p, default, headteacher, assessment, organisation_approval, advance
"""
GENERATED_ONLY = {"WA004": "a fixture over 10 MiB does not belong in git: test_huge_file"}


def codes(problems: list[Problem]) -> list[tuple[int, int, str]]:
    return [(p.line, p.column, p.code) for p in problems]


def policy(text: str, workflow: Workflow | None = WORKFLOW) -> list[Problem]:
    return check_policy_text(text, "policy.csv", workflow)[1]


# -- the repository's own files and the documentation ----------------------------------------


def test_the_shipped_model_definition_and_policy_are_clean() -> None:
    files = collect([REPO / "policy", REPO / "model.conf"])
    result = check_files(files, REPO / "policy" / "workflow.toml")
    assert result.problems == []
    assert result.workflow == WORKFLOW
    assert len(result.all_rows()) == SHIPPED_ROWS


def test_every_code_is_documented() -> None:
    docs = (REPO / "README.md").read_text(encoding="utf-8")
    assert [code for code in CODES if f"`{code}`" not in docs] == []


def test_every_code_has_a_fixture_folder() -> None:
    covered = {
        line.split()[-1]
        for expected in POLICIES.glob("invalid/*/expected.txt")
        for line in expected.read_text(encoding="utf-8").splitlines()
    }
    assert set(CODES) - covered == set(GENERATED_ONLY)


# -- policy rows -----------------------------------------------------------------------------


def test_rows_come_with_their_line_numbers_and_comments_are_skipped() -> None:
    text = "# who may do what\n\np, default, parent, behaviour, completed, view\n"
    rows, problems = parse_policy_text(text, "policy.csv")
    assert problems == []
    assert rows == [PolicyLine(3, ("default", "parent", "behaviour", "completed", "view"))]
    assert rows[0].column(1) == 13  # where `parent` starts


def test_crlf_line_endings_are_accepted() -> None:
    assert policy(MINIMAL.replace("\n", "\r\n")) == []


@pytest.mark.parametrize(
    ("line", "column"),
    [
        ("p,default, parent, behaviour, completed, view", 3),
        ("p, default,  parent, behaviour, completed, view", 12),
        ("p, default ,parent, behaviour, completed, view", 11),
        (" p, default, parent, behaviour, completed, view", 1),
        ("p, default, parent, behaviour, completed, view ", 47),
        ("p, default,\tparent, behaviour, completed, view", 12),
    ],
)
def test_only_one_space_after_each_comma_is_accepted(line: str, column: int) -> None:
    assert codes(policy(MINIMAL + line)) == [(5, column, "WA304")]


def test_non_canonical_spacing_still_yields_the_row() -> None:
    rows, problems = parse_policy_text("p,default,parent,behaviour,completed,view", "p.csv")
    assert [p.code for p in problems] == ["WA304"]
    assert rows[0].row == ("default", "parent", "behaviour", "completed", "view")


@pytest.mark.parametrize(
    ("line", "code", "column"),
    [
        ("p, default, parent, behaviour, completed", "WA301", 1),
        ("p, default, parent, behaviour, completed, view,", "WA301", 1),
        ("g, default, parent, behaviour, completed, view", "WA302", 1),
        ("p, default, parent, behaviour, completed, ", "WA303", 43),
        ("p, Default, parent, behaviour, completed, view", "WA305", 4),
        ("p, default-school, parent, behaviour, completed, view", "WA305", 4),
        ("p, default, parent, behaviour, completed, view # comment", "WA305", 43),
        ("p, default, teacher, behaviour, completed, view", "WA306", 13),
        ("p, default, parent, conduct, completed, view", "WA307", 21),
        ("p, default, parent, behaviour, course_registration, view", "WA308", 32),
        ("p, default, parent, behaviour, completed, read", "WA309", 43),
        ("p, default, parent, behaviour, completed, edit", "WA314", 43),
        ("p, default, parent, assessment, course_registration, advance", "WA314", 54),
    ],
)
def test_a_bad_row_is_reported_where_it_is_wrong(line: str, code: str, column: int) -> None:
    assert codes(policy(MINIMAL + line)) == [(5, column, code)]


def test_identifiers_are_only_checked_against_a_definition_when_there_is_one() -> None:
    assert policy("p, default, teacher, conduct, someday, read", workflow=None) == []


def test_a_duplicate_names_the_first_line() -> None:
    row = "p, default, parent, behaviour, completed, view\n"
    (problem,) = policy(MINIMAL + row + row)
    assert (problem.line, problem.code) == (6, "WA310")
    assert "line 5" in problem.message


def test_each_tenant_needs_its_own_advance_rows() -> None:
    assert policy(MINIMAL + MINIMAL.replace("default", "north")) == []
    problems = policy(MINIMAL + "p, north, mentor, behaviour, group_registration, advance\n")
    assert sorted(p.code for p in problems) == ["WA311", "WA311", "WA311"]
    assert {p.line for p in problems} == {5}


def test_advance_rules_count_distinct_valid_rows_only() -> None:
    duplicate = "p, default, mentor, behaviour, group_registration, advance\n"
    assert [p.code for p in policy(MINIMAL + duplicate)] == ["WA310"]
    audience = "p, default, parent, behaviour, group_registration, advance\n"
    assert [p.code for p in policy(MINIMAL + audience)] == ["WA314"]


def test_a_file_of_comments_has_no_rows() -> None:
    assert codes(policy("# nothing yet\n")) == [(1, 1, "WA315")]


# -- reopen, the optional fourth action (issue 7) --------------------------------------------

THREE = dataclasses.replace(WORKFLOW, actions=ACTIONS)
FOUR = dataclasses.replace(WORKFLOW, actions=(*ACTIONS, "reopen"))


def with_actions(actions: str) -> list[tuple[int, int, str]]:
    """The problems of the shipped definition with another `actions = [...]` line."""
    return definition(re.sub(r"(?m)^actions = .*$", f"actions = {actions}", DEFINITION))


@pytest.mark.parametrize(
    "actions", ['["view", "edit", "advance"]', '["view", "edit", "advance", "reopen"]']
)
def test_the_definition_may_add_reopen_after_the_three_actions(actions: str) -> None:
    assert with_actions(actions) == []


@pytest.mark.parametrize(
    "actions",
    [
        '["view", "advance", "edit"]',
        '["reopen", "view", "edit", "advance"]',
        '["view", "edit", "reopen"]',
        '["view", "edit", "advance", "delete"]',
    ],
)
def test_other_action_lists_or_orders_are_refused(actions: str) -> None:
    assert [code for _, _, code in with_actions(actions)] == ["WA211"]


def test_a_repeated_action_is_reported_once_as_a_duplicate() -> None:
    assert [code for _, _, code in with_actions('["view", "edit", "advance", "view"]')] == ["WA204"]


def test_reopen_is_an_unknown_action_when_the_definition_lacks_it() -> None:
    line = "p, default, headteacher, behaviour, completed, reopen"
    assert codes(policy(MINIMAL + line, THREE)) == [(5, 48, "WA309")]
    assert policy(MINIMAL + line, FOUR) == []


@pytest.mark.parametrize(
    ("line", "column"),
    [
        ("p, default, headteacher, behaviour, group_registration, reopen", 37),
        ("p, default, course_teacher, assessment, course_registration, reopen", 41),
    ],
)
def test_reopen_on_an_areas_first_phase_is_refused(line: str, column: int) -> None:
    (problem,) = policy(MINIMAL + line, FOUR)
    assert (problem.line, problem.column, problem.code) == (5, column, "WA317")
    assert "first phase" in problem.message


def test_audiences_never_reopen() -> None:
    line = "p, default, parent, behaviour, completed, reopen"
    (problem,) = policy(MINIMAL + line, FOUR)
    assert (problem.code, problem.column) == ("WA314", 43)
    assert problem.message.endswith("never reopen")
    first_phase = "p, default, parent, behaviour, group_registration, reopen"
    assert [p.code for p in policy(MINIMAL + first_phase, FOUR)] == ["WA314"]


def test_the_cells_of_a_definition_follow_its_actions() -> None:
    assert len(THREE.cells()) == 108
    assert len(FOUR.cells()) == 144


# -- model.conf ------------------------------------------------------------------------------


def model(old: str, new: str) -> list[str]:
    assert old in MODEL
    return [p.code for p in check_model_text(MODEL.replace(old, new), "model.conf")]


def test_the_model_may_be_spread_over_continuation_lines() -> None:
    spread = MODEL.replace("&& r.area", "\\\n    && r.area")
    assert check_model_text(spread, "model.conf") == []


@pytest.mark.parametrize(
    "matcher",
    [
        "r.tenant == p.tenant && r.role == p.role && r.area == p.area && r.phase == p.phase",
        "p.tenant == r.tenant && r.role == p.role && r.area == p.area && r.phase == p.phase "
        "&& r.action == p.action",
        "r.tenant == p.tenant || r.role == p.role && r.area == p.area && r.phase == p.phase "
        "&& r.action == p.action",
        "(r.tenant == p.tenant) && r.role == p.role && r.area == p.area && r.phase == p.phase "
        "&& r.action == p.action",
        "r.tenant == p.tenant && r.role == p.role && r.area == p.area && r.phase == p.phase "
        "&& regexMatch(r.action, p.action)",
        "r.tenant == p.tenant && r.role == p.role && r.area == p.area && r.phase == p.phase "
        "&& eval(p.action)",
        "r.tenant == p.tenant && r.role == p.role && r.area == p.area && r.phase == p.phase "
        "&& r.action == p.action && r.role == p.role",
        "r.tenant == p.role && r.role == p.role && r.area == p.area && r.phase == p.phase "
        "&& r.action == p.action",
    ],
)
def test_a_matcher_other_than_exact_equality_on_every_field_is_refused(matcher: str) -> None:
    assert set(model(MODEL.splitlines()[-1], f"m = {matcher}")) == {"WA106"}


def test_a_matcher_may_list_the_fields_in_any_order() -> None:
    reordered = "m = r.action == p.action && r.phase == p.phase && r.area == p.area && " + (
        "r.role == p.role && r.tenant == p.tenant"
    )
    assert model(MODEL.splitlines()[-1], reordered) == []


def test_a_second_definition_of_a_key_is_reported() -> None:
    assert model("[policy_effect]", "r = tenant, role, area, phase, action\n[policy_effect]") == [
        "WA103"
    ]


def test_an_empty_definition_is_reported_not_raised() -> None:
    assert model("p = tenant, role, area, phase, action", "p =") == ["WA105"]


# -- the workflow definition -----------------------------------------------------------------


def definition(text: str) -> list[tuple[int, int, str]]:
    return codes(check_definition_text(text, "workflow.toml")[1])


def test_the_definition_found_is_the_one_the_service_loads() -> None:
    assert check_definition_text(DEFINITION, "workflow.toml") == (WORKFLOW, [])


def test_missing_top_level_keys_are_each_reported() -> None:
    assert definition('title = "x"\n') == [
        (1, 1, "WA202"),
        (1, 1, "WA202"),
        (1, 1, "WA202"),
        (1, 9, "WA212"),
    ]


def test_tables_of_the_wrong_type_are_reported_not_raised() -> None:
    text = 'actions = "view"\nroles = ["learner"]\n[areas]\nid = "behaviour"\n'
    assert [code for _, _, code in definition(text)] == ["WA202"] * 3


def test_a_definition_written_with_inline_tables_is_still_checked() -> None:
    text = (
        'actions = ["view", "edit", "advance"]\n'
        'roles = [{id = "learner", label = "L", kind = "audience"}, '
        '{id = "Mentor", label = "M", kind = "staff"}]\n'
        'areas = [{id = "a", label = "A", phases = [{id = "done", label = "Done"}]}]\n'
    )
    assert definition(text) == [(2, 9, "WA203")]


# -- output formats --------------------------------------------------------------------------

PROBLEM = Problem("policy/p,1.csv", 3, 7, "WA304", "50% done: a, b\nnext")


def test_text_format_is_path_line_column_code_message() -> None:
    assert render([PROBLEM], "text") == "policy/p,1.csv:3:7: WA304 50% done: a, b\nnext"


def test_github_format_is_an_escaped_error_annotation() -> None:
    assert render([PROBLEM], "github") == (
        "::error file=policy/p%2C1.csv,line=3,col=7,title=WA304::50%25 done: a, b%0Anext"
    )


def test_json_format_is_a_list_of_problem_objects() -> None:
    assert json.loads(render([PROBLEM], "json")) == [
        {
            "path": "policy/p,1.csv",
            "line": 3,
            "column": 7,
            "code": "WA304",
            "message": "50% done: a, b\nnext",
        }
    ]
    assert render([], "json") == "[]"


# -- unreadable, undecodable, empty and huge files -------------------------------------------


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", (1, 1, "WA005")),
        (b" \n\t\n", (1, 1, "WA005")),
        (b"p, a\np, \xff\n", (2, 4, "WA002")),
        (b"p, \xc3\xa9\x00", (1, 5, "WA003")),
        (b"\xef\xbb\xbfp, default", (1, 1, "WA006")),
    ],
)
def test_bytes_that_are_not_checkable_text_are_located(
    data: bytes, problem: tuple[int, int, str]
) -> None:
    text, problems = decode_source(data, "policy.csv")
    assert text is None
    assert codes(problems) == [problem]


def test_a_path_that_cannot_be_read_is_a_problem(tmp_path: Path) -> None:
    assert codes(read_source(tmp_path)[1]) == [(1, 1, "WA001")]


def test_huge_file(tmp_path: Path) -> None:
    huge = tmp_path / "policy.csv"
    huge.write_bytes(MINIMAL.encode() * (MAX_BYTES // len(MINIMAL) + 1))
    result = check_files(collect([tmp_path]), REPO / "policy" / "workflow.toml")
    assert codes(result.problems) == [(1, 1, "WA004")]


TEXT_CHECKS = {
    "model": lambda text: check_model_text(text, "model.conf"),
    "definition": lambda text: check_definition_text(text, "workflow.toml")[1],
    "policy": lambda text: check_policy_text(text, "policy.csv", WORKFLOW)[1],
}


def assert_reported(problems: list[Problem]) -> None:
    assert problems, "garbage must be reported"
    for problem in problems:
        assert problem.code in CODES
        assert problem.line >= 1 and problem.column >= 1


@pytest.mark.parametrize("kind", sorted(TEXT_CHECKS))
@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300))
def test_garbage_bytes_are_reported_never_raised(kind: str, data: bytes) -> None:
    text, problems = decode_source(data, kind)
    assert_reported(problems if text is None else TEXT_CHECKS[kind](text))


LINEISH = st.lists(
    st.text(alphabet=st.sampled_from(list("p, =[]\"'#;\\\r\t.()&|_xyzAB09\n") + ["\u00e9"])),
    max_size=8,
).map("\n".join)


@pytest.mark.parametrize("kind", sorted(TEXT_CHECKS))
@settings(max_examples=80, deadline=None)
@given(text=LINEISH)
def test_garbage_text_is_reported_never_raised(kind: str, text: str) -> None:
    if text.strip():
        assert_reported(TEXT_CHECKS[kind](text))


ROW = st.tuples(
    st.sampled_from(["default", "north"]),
    st.sampled_from([r.id for r in WORKFLOW.roles]),
    st.sampled_from(["behaviour", "assessment"]),
    st.sampled_from(["group_registration", "course_registration", "completed"]),
    st.sampled_from(list(WORKFLOW.actions)),
)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(ROW, max_size=30))
def test_canonical_rows_are_read_back_exactly(rows: list[tuple[str, str, str, str, str]]) -> None:
    text = "".join(f"p, {', '.join(row)}\n" for row in rows)
    parsed, problems = parse_policy_text(text, "policy.csv")
    assert problems == []
    assert [(p.line, p.row) for p in parsed] == list(enumerate(rows, 1))
