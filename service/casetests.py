"""Decision test cases: read the cases table, run it against a decision function, measure coverage.

Pure, no Flask and no database. A cases file is CSV: `#` comment and blank lines anywhere, then
the header `name,tenant,role,area,phase,action,expect`, then one case per line (expect is allow or
deny). Cases are decided by the service's own decision path (decisions.decide_all, over the facts
of the policy files: each tenant's rows as its policy), so a request is allowed exactly when it is
one of the rows, which is what casbin decides with model.conf's exact-equality matcher
(tests/test_casetests.py proves it).
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.assessments import Subject
from service.checker.problems import Problem
from service.checker.sources import is_blank_or_comment, numbered_lines, read_source
from service.decisions import Question, decide_all
from service.errors import ServiceError
from service.keys import Key
from service.policies import Decision, TenantPolicy
from service.policies.model import FIELDS
from service.workflows import Cell, Row, Workflow, is_identifier

HEADER = ("name", *FIELDS, "expect")
EXPECT = {"allow": True, "deny": False}
MAX_UNCOVERED_SHOWN = 20
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

Decide = Callable[[str, str, str, str, str], tuple[bool, list[str] | None]]
"""A decision function: (tenant, role, area, phase, action) -> (allowed, the rule that matched)."""


@dataclass(frozen=True)
class Case:
    """One decision test case: a named request and the answer it expects."""

    name: str
    request: Row
    expect: bool
    path: str
    line: int


@dataclass(frozen=True)
class Outcome:
    """A case's actual answer and the rule that matched (None when none did)."""

    case: Case
    allowed: bool
    rule: tuple[str, ...] | None

    @property
    def passed(self) -> bool:
        return self.allowed == self.case.expect


@dataclass(frozen=True)
class Coverage:
    """How many matrix cells (tenant x role x area-phase x action) the cases exercise."""

    total: int
    uncovered: tuple[Row, ...]

    @property
    def covered(self) -> int:
        return self.total - len(self.uncovered)

    @property
    def percent(self) -> float:
        return 100.0 * self.covered / self.total if self.total else 0.0


# -- reading cases ---------------------------------------------------------------------------


def read_cases(
    paths: Sequence[Path], workflow: Workflow | None
) -> tuple[list[Case], list[Problem]]:
    """The cases of every file, and the problems of the files (names are unique across files)."""
    cases: list[Case] = []
    problems: list[Problem] = []
    for path in paths:
        text, found = read_source(path)
        if text is not None:
            parsed, found = parse_cases_text(text, str(path), workflow)
            cases += parsed
        problems += found
    return cases, problems + duplicate_name_problems(cases)


def parse_cases_text(
    text: str, path: str, workflow: Workflow | None
) -> tuple[list[Case], list[Problem]]:
    """The well-formed cases of one file, and a problem for each malformed row.

    Identifiers are checked against `workflow` when given; duplicate names are not checked here
    (see duplicate_name_problems, which works across files).
    """
    rows = [(n, line) for n, line in numbered_lines(text) if not is_blank_or_comment(line)]
    if not rows:
        return [], [Problem(path, 1, 1, "WA407", "no cases: the file holds only comments")]
    number, header = rows[0]
    if _csv_fields(header) != list(HEADER):
        message = f"the first row must be the header `{','.join(HEADER)}`"
        return [], [Problem(path, number, 1, "WA401", message)]
    cases, problems = _parse_cases(rows[1:], path, workflow)
    if len(rows) == 1:
        problems.append(Problem(path, number, 1, "WA407", "no cases after the header"))
    return cases, problems


def _parse_cases(
    rows: Sequence[tuple[int, str]], path: str, workflow: Workflow | None
) -> tuple[list[Case], list[Problem]]:
    """The well-formed cases among numbered case rows, and the problems of the others."""
    cases: list[Case] = []
    problems: list[Problem] = []
    for number, line in rows:
        case, found = _parse_case(line, number, path, workflow)
        problems += found
        cases += [case] if case else []
    return cases, problems


def _csv_fields(line: str) -> list[str] | None:
    """The fields of one CSV line with surrounding whitespace removed, None when malformed."""
    try:
        return [f.strip() for f in next(csv.reader([line], strict=True))]
    except csv.Error:
        return None


def _parse_case(
    line: str, number: int, path: str, workflow: Workflow | None
) -> tuple[Case | None, list[Problem]]:
    """One case row: seven fields, none empty, expect allow or deny, known identifiers."""
    fields = _csv_fields(line)
    if fields is None or len(fields) != len(HEADER):
        found = "is malformed CSV" if fields is None else f"has {len(fields)} fields"
        message = f"a case has {len(HEADER)} fields ({','.join(HEADER)}); this row {found}"
        return None, [Problem(path, number, 1, "WA402", message)]
    problems = _field_problems(line, number, path, fields, workflow)
    if problems:
        return None, problems
    name, tenant, role, area, phase, action, expect = fields
    request = (tenant, role, area, phase, action)
    return Case(name, request, EXPECT[expect], path, number), []


def _field_problems(
    line: str, number: int, path: str, fields: Sequence[str], workflow: Workflow | None
) -> list[Problem]:
    """A problem, located at the field, for each field of a case that is wrong."""
    columns = _columns(line, fields)
    return [
        Problem(path, number, columns[i], code, message)
        for i, value in enumerate(fields)
        for code, message in [_field_problem(i, value, fields, workflow)]
        if code
    ]


def _columns(line: str, fields: Sequence[str]) -> list[int]:
    """Where each field's value starts on the line (1-based), found left to right."""
    columns: list[int] = []
    position = 0
    for value in fields:
        found = line.find(value, position) if value else -1
        position = found + len(value) if found >= 0 else position
        columns.append(found + 1 if found >= 0 else position + 1)
    return columns


def _field_problem(
    index: int, value: str, fields: Sequence[str], workflow: Workflow | None
) -> tuple[str, str]:
    """The code and message of what is wrong with one field of a case ('' when nothing)."""
    name = HEADER[index]
    if not value:
        return "WA403", f"field {index + 1} ({name}) is empty"
    if name == "expect":
        return ("", "") if value in EXPECT else ("WA404", f"expect is allow or deny, not {value!r}")
    if name == "name":
        return "", ""
    if not is_identifier(value):
        return "WA405", f"{name} {value!r} is not a lowercase identifier"
    known = _known(name, fields, workflow)
    if known is not None and value not in known:
        return "WA405", f"unknown {name} {value!r} (known: {', '.join(known)})"
    return "", ""


def _known(name: str, fields: Sequence[str], workflow: Workflow | None) -> Sequence[str] | None:
    """The ids the definition allows for a field (None: any, or unknowable without its area)."""
    if workflow is None or name == "tenant":
        return None
    if name == "phase":
        area = workflow.area_by_id.get(fields[HEADER.index("area")])
        return [p.id for p in area.phases] if area else None
    return {
        "role": [r.id for r in workflow.roles],
        "area": [a.id for a in workflow.areas],
        "action": list(workflow.actions),
    }[name]


def duplicate_name_problems(cases: Sequence[Case]) -> list[Problem]:
    """Each case name is used once, so a failure names exactly one case."""
    first: dict[str, Case] = {}
    problems: list[Problem] = []
    for case in cases:
        if case.name in first:
            other = first[case.name]
            message = f"case name {case.name!r} is already used at {other.path}:{other.line}"
            problems.append(Problem(case.path, case.line, 1, "WA406", message))
        first.setdefault(case.name, case)
    return problems


# -- running ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Files:
    """The facts of policy files, for `decisions.decide_all`: each tenant's rows as its policy at
    version 0 (files carry none); every tenant a case names exists (one without rows allows
    nothing); cases name no assessments."""

    workflow: Workflow
    policies: Mapping[str, TenantPolicy]

    def subjects(self, wanted: set[tuple[str, str]]) -> Mapping[tuple[str, str], Subject]:
        return {}

    def versions(self, tenants: set[str]) -> Mapping[str, int]:
        return {tenant: 0 for tenant in tenants}

    def policy(self, tenant: str, version: int) -> TenantPolicy:
        return self.policies.get(tenant) or TenantPolicy(tenant, 0, frozenset())


CASES_KEY = Key(0, "workflow-authz test", None)
"""The cases ask for any tenant their files hold."""


def decision_from_rows(rows: Iterable[Row], workflow: Workflow) -> Decide:
    """Decide as the service does: through `decisions.decide_all`, over the files' facts. A
    request the definition cannot place (an unknown area, say) is refused there, so it matches
    no row (cases are checked against the definition before they run)."""
    facts = _Files(workflow, _policies(rows))

    def decide_case(
        tenant: str, role: str, area: str, phase: str, action: str
    ) -> tuple[bool, list[str] | None]:
        question = Question(tenant, role, action, area=area, phase=phase)
        (answer,) = decide_all(facts, CASES_KEY, [question], record=_unrecorded)
        if isinstance(answer, ServiceError) or answer.decision.rule is None:
            return False, None
        return answer.decision.allowed, list(answer.decision.rule)

    return decide_case


def _unrecorded(decision: Decision, assessment: str | None, key: Key) -> str:
    """Cases are not the service's decisions: nothing goes to the decision log."""
    return ""


def _policies(rows: Iterable[Row]) -> dict[str, TenantPolicy]:
    """Each tenant's rows as its policy (version 0: files carry no version)."""
    cells: dict[str, set[Cell]] = {}
    for row in rows:
        cells.setdefault(row[0], set()).add(row[1:])
    return {tenant: TenantPolicy(tenant, 0, frozenset(found)) for tenant, found in cells.items()}


def run_cases(cases: Iterable[Case], decide: Decide) -> list[Outcome]:
    """Each case's actual answer and matching rule."""
    outcomes: list[Outcome] = []
    for case in cases:
        allowed, rule = decide(*case.request)
        outcomes.append(Outcome(case, allowed, tuple(rule) if rule else None))
    return outcomes


def coverage(cases: Iterable[Case], workflow: Workflow) -> Coverage:
    """The matrix cells of every tenant the cases name, and those no case exercises."""
    cases = list(cases)
    tenants = dict.fromkeys(c.request[0] for c in cases)
    exercised = {c.request for c in cases}
    cells = [(t, *cell) for t in tenants for cell in workflow.cells()]
    return Coverage(len(cells), tuple(c for c in cells if c not in exercised))


# -- reports ---------------------------------------------------------------------------------


def summary(outcomes: Sequence[Outcome], cover: Coverage) -> str:
    """One line: how many cases passed and failed, and the coverage."""
    failed = sum(not o.passed for o in outcomes)
    return (
        f"{len(outcomes)} cases, {len(outcomes) - failed} passed, {failed} failed; "
        f"coverage {cover.percent:.1f}% of {cover.total} cells"
    )


def text_report(outcomes: Sequence[Outcome], cover: Coverage, uncovered: bool = False) -> str:
    """Each failure, then (when asked) the first uncovered cells, then the summary line."""
    lines = [_failure_line(o) for o in outcomes if not o.passed]
    shown = cover.uncovered[:MAX_UNCOVERED_SHOWN] if uncovered else ()
    lines += [f"uncovered cell: {', '.join(cell)}" for cell in shown]
    if uncovered and len(cover.uncovered) > len(shown):
        lines.append(f"... and {len(cover.uncovered) - len(shown)} more uncovered cells")
    return "\n".join([*lines, summary(outcomes, cover)])


def _failure_line(outcome: Outcome) -> str:
    case = outcome.case
    return f"FAIL {case.path}:{case.line}: {case.name}: {failure_message(outcome)}"


def failure_message(outcome: Outcome) -> str:
    """Expected vs actual answer and the rule that matched, e.g. for a JUnit failure message."""
    expected, actual = _word(outcome.case.expect), _word(outcome.allowed)
    rule = f"matched rule `p, {', '.join(outcome.rule)}`" if outcome.rule else "no rule matched"
    return f"expected {expected}, got {actual} ({rule})"


def _word(allowed: bool) -> str:
    return "allow" if allowed else "deny"


def junit_xml(outcomes: Sequence[Outcome], cover: Coverage) -> str:
    """The results as JUnit XML (one testsuite, a testcase per case), for CI test reports."""
    failures = str(sum(not o.passed for o in outcomes))
    counts = {"tests": str(len(outcomes)), "failures": failures, "errors": "0", "skipped": "0"}
    suites = ET.Element("testsuites", {"name": "workflow-authz test", **counts})
    suite = ET.SubElement(suites, "testsuite", {"name": "workflow-authz policy cases", **counts})
    properties = ET.SubElement(suite, "properties")
    for name, value in (("coverage", f"{cover.percent:.1f}"), ("cells", str(cover.total))):
        ET.SubElement(properties, "property", name=name, value=value)
    for outcome in outcomes:
        _junit_case(suite, outcome)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _junit_case(suite: ET.Element, outcome: Outcome) -> None:
    """One <testcase> (with its <failure> when the case failed), located by file and line."""
    case = outcome.case
    attributes = {
        "name": _xml_text(case.name),
        "classname": _xml_text(case.path),
        "file": _xml_text(case.path),
        "line": str(case.line),
    }
    element = ET.SubElement(suite, "testcase", attributes)
    if not outcome.passed:
        message = _xml_text(failure_message(outcome))
        failure = ET.SubElement(element, "failure", message=message, type="WrongDecision")
        failure.text = f"{case.path}:{case.line}: {_xml_text(case.name)}: {message}"


def _xml_text(value: str) -> str:
    """Text with the characters XML 1.0 cannot hold replaced, so the report always parses."""
    return XML_INVALID.sub("\ufffd", value)
