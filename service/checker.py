"""Check policy files before they reach the service: model.conf, workflow.toml and policy CSVs.

Pure functions, no Flask and no database: each check takes a file's text and returns Problems,
each with a stable code (CODES, documented in docs/policy-checks.md), a 1-based line and column,
and a message saying what is wrong and what to write instead. Reading a file is a check too: a
file that cannot be read, is not UTF-8, holds a NUL byte or is too large is a Problem, never an
exception. casbin is imported here only to parse model.conf exactly as the service will.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from casbin.model import Model

from service.workflows import (
    Area,
    DefinitionError,
    Phase,
    Role,
    Workflow,
    is_identifier,
    parse_workflow,
)

MAX_BYTES = 10 * 1024 * 1024
FIELDS = ("tenant", "role", "area", "phase", "action")
TENANT, ROLE, AREA, PHASE, ACTION = range(5)
ACTIONS = ("view", "edit", "advance")
EFFECT = "some(where (p.eft == allow))"
CANONICAL_ROW = "p, default, parent, behaviour, completed, view"

Row = tuple[str, str, str, str, str]
"""(tenant, role, area, phase, action): one casbin policy row without its `p`."""
Kind = Literal["model", "definition", "policy", "cases"]
Format = Literal["text", "github", "json"]
FORMATS: tuple[Format, ...] = ("text", "github", "json")

CODES: Mapping[str, str] = {
    "WA001": "file cannot be read",
    "WA002": "file is not UTF-8",
    "WA003": "file contains a NUL byte",
    "WA004": "file is larger than 10 MiB",
    "WA005": "file is empty",
    "WA006": "file starts with a byte order mark",
    "WA101": "model does not parse",
    "WA102": "model lacks a section or definition",
    "WA103": "model has an unexpected or repeated definition",
    "WA104": "request definition is not tenant, role, area, phase, action",
    "WA105": "policy definition is not tenant, role, area, phase, action",
    "WA106": "matcher is not exact equality on every field",
    "WA107": "effect is not some-allow",
    "WA201": "definition is not valid TOML",
    "WA202": "definition lacks a key or a value has the wrong type",
    "WA203": "definition id is not an identifier",
    "WA204": "definition id is defined twice",
    "WA205": "area has no phases",
    "WA206": "role kind is neither audience nor staff",
    "WA207": "role catalogue lacks an audience or a staff role",
    "WA208": "responsible role is not in the catalogue",
    "WA209": "responsible role missing on a non-final phase or set on the final phase",
    "WA210": "responsible role is an audience",
    "WA211": "actions are not view, edit and advance",
    "WA212": "definition has an unknown key",
    "WA301": "policy row has the wrong number of fields",
    "WA302": "policy row type is not p",
    "WA303": "policy row has an empty field",
    "WA304": "policy row spacing is not canonical",
    "WA305": "policy value is not a lowercase identifier",
    "WA306": "policy names an unknown role",
    "WA307": "policy names an unknown area",
    "WA308": "policy names a phase the area does not have",
    "WA309": "policy names an unknown action",
    "WA310": "policy row is a duplicate",
    "WA311": "non-final phase has no advance row",
    "WA312": "phase has more than one advance row",
    "WA313": "final phase has an advance row",
    "WA314": "audience may edit or advance",
    "WA315": "policy file has no rows",
    "WA316": "tenant has rows in more than one policy file",
    "WA401": "cases file lacks the header row",
    "WA402": "case row has the wrong number of fields",
    "WA403": "case row has an empty field",
    "WA404": "case expectation is neither allow nor deny",
    "WA405": "case names an invalid or unknown identifier",
    "WA406": "case name is used twice",
    "WA407": "cases file has no cases",
}


@dataclass(frozen=True, order=True)
class Problem:
    """One finding: where (1-based line and column), which kind (code) and what to do."""

    path: str
    line: int
    column: int
    code: str
    message: str


@dataclass(frozen=True)
class PolicyLine:
    """One policy row of a CSV file and the line it came from."""

    line: int
    row: Row
    columns: tuple[int, ...] = field(default=(), compare=False)

    def column(self, index: int) -> int:
        """Where value `index` starts; canonical spacing is assumed when columns are unknown."""
        if self.columns:
            return self.columns[index]
        return 4 + sum(len(value) + 2 for value in self.row[:index])


# -- reading ---------------------------------------------------------------------------------


def read_source(path: Path) -> tuple[str | None, list[Problem]]:
    """A file's text, or None and the problem that stops it being checked."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return None, [Problem(str(path), 1, 1, "WA001", f"cannot read the file: {reason}")]
    return decode_source(data, str(path))


def decode_source(data: bytes, path: str) -> tuple[str | None, list[Problem]]:
    """Decode a file's bytes as UTF-8 text, or None and the problem with them."""
    if len(data) > MAX_BYTES:
        return None, [_problem(path, (1, 1), "WA004", "the file is larger than 10 MiB")]
    if b"\0" in data:
        where = _byte_position(data, data.index(b"\0"))
        return None, [_problem(path, where, "WA003", "NUL byte: this is not a text file")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = _byte_position(data, exc.start)
        return None, [_problem(path, where, "WA002", "not UTF-8: save the file as UTF-8")]
    if text.startswith("\ufeff"):
        return None, [_problem(path, (1, 1), "WA006", "byte order mark: save as UTF-8 without BOM")]
    if not text.strip():
        return None, [_problem(path, (1, 1), "WA005", "the file is empty")]
    return text, []


def _byte_position(data: bytes, offset: int) -> tuple[int, int]:
    """Line and column (in characters) of a byte offset."""
    start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[start:offset].decode("utf-8", "replace")) + 1
    return data.count(b"\n", 0, offset) + 1, column


def _problem(path: str, where: tuple[int, int], code: str, message: str) -> Problem:
    return Problem(path, where[0], where[1], code, message)


def numbered_lines(text: str) -> list[tuple[int, str]]:
    """Lines split on LF as casbin reads them, a CR before the LF dropped, numbered from 1."""
    return [(n, line.removesuffix("\r")) for n, line in enumerate(text.split("\n"), 1)]


def is_blank_or_comment(line: str) -> bool:
    """Blank lines and lines whose first non-blank character is # carry no row."""
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


# -- model.conf ------------------------------------------------------------------------------

MODEL_KEYS = {
    "request_definition": "r",
    "policy_definition": "p",
    "policy_effect": "e",
    "matchers": "m",
}
TERM = re.compile(r"r_(\w+) *== *p_(\w+)")


@dataclass(frozen=True)
class _Entry:
    """A `key = value` of model.conf: its section, key, line and the column its value starts."""

    section: str
    key: str
    line: int
    column: int


def check_model_text(text: str, path: str) -> list[Problem]:
    """Problems of model.conf: it must parse and be exactly the service's exact-equality model."""
    model = Model()
    try:
        model.load_model_from_text(text)
    except Exception as exc:  # casbin's parser raises bare RuntimeErrors; never let one escape
        line = re.search(r"line (\d+)", str(exc))
        where = (int(line.group(1)) if line else 1, 1)
        message = f"not a [section], `key = value` or # comment line (casbin: {exc})"
        return [_problem(path, where, "WA101", message)]
    entries = _model_entries(text)
    first = {(e.section, e.key): e for e in reversed(entries)}
    problems = _model_layout_problems(entries, path)
    for section, key in MODEL_KEYS.items():
        entry = first.get((section, key))
        if entry is not None:
            problems += _model_value_problems(key, (model[key] or {}).get(key), entry, path)
    return problems


def _model_entries(text: str) -> list[_Entry]:
    """Every definition of model.conf with its position, read with casbin's line grammar."""
    entries: list[_Entry] = []
    section, continued = "", False
    for number, raw in numbered_lines(text):
        line = raw.strip()
        if continued:
            continued = line.endswith("\\")
        elif line and line[0] not in "#;":
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, _, value = raw.partition("=")
            column = len(key) + 2 + len(value) - len(value.lstrip())
            entries.append(_Entry(section, key.strip(), number, column))
            continued = line.endswith("\\")
    return entries


def _model_layout_problems(entries: Sequence[_Entry], path: str) -> list[Problem]:
    """The four sections each define their one key, once; nothing else is defined."""
    problems: list[Problem] = []
    seen: dict[tuple[str, str], int] = {}
    for e in entries:
        where = (e.line, 1)
        if MODEL_KEYS.get(e.section) != e.key:
            message = f"[{e.section}] {e.key} is not part of the exact-equality model; remove it"
            problems.append(_problem(path, where, "WA103", message))
        elif (e.section, e.key) in seen:
            message = f"{e.key} is defined again (first at line {seen[e.section, e.key]})"
            problems.append(_problem(path, where, "WA103", message))
        seen.setdefault((e.section, e.key), e.line)
    for section, key in MODEL_KEYS.items():
        if (section, key) not in seen:
            message = f"missing `{key} = ...` in section [{section}]"
            problems.append(_problem(path, (1, 1), "WA102", message))
    return problems


def _model_value_problems(key: str, assertion: Any, entry: _Entry, path: str) -> list[Problem]:
    """Problems of one definition's value, as casbin parsed it (None when casbin skipped it)."""
    where = (entry.line, entry.column)
    value = "" if assertion is None else str(assertion.value)
    tokens = [] if assertion is None else list(assertion.tokens)
    if key in ("r", "p") and tokens != [f"{key}_{f}" for f in FIELDS]:
        code, what = ("WA104", "request") if key == "r" else ("WA105", "policy")
        message = f"the {what} definition must be `{key} = {', '.join(FIELDS)}`, not `{value}`"
        return [_problem(path, where, code, message)]
    if key == "e" and value.replace(" ", "") != EFFECT.replace(".", "_").replace(" ", ""):
        message = f"the effect must be `{EFFECT}`, not `{_dotted(value)}`"
        return [_problem(path, where, "WA107", message)]
    if key == "m":
        return [_problem(path, where, "WA106", m) for m in _matcher_problems(value)]
    return []


def _matcher_problems(value: str) -> list[str]:
    """What keeps a matcher from being r.X == p.X for each field, joined by && only."""
    messages: list[str] = []
    compared: list[str] = []
    for term in (t.strip(" ") for t in value.split("&&")):  # spaces only, as the service reads it
        match = TERM.fullmatch(term)
        if match and match[1] == match[2] and match[1] in FIELDS:
            compared.append(match[1])
        else:
            messages.append(
                f"matcher term `{_dotted(term)}` is not `r.X == p.X` for a field; functions "
                "(keyMatch, regexMatch, eval...) and other operators are not allowed"
            )
    missing = [f for f in FIELDS if f not in compared]
    if missing:
        messages.append(f"the matcher must compare every field; it does not compare {missing}")
    repeated = sorted({f for f in compared if compared.count(f) > 1})
    if repeated:
        messages.append(f"the matcher compares {repeated} more than once")
    return messages


def _dotted(value: str) -> str:
    """casbin's escaped names (r_role, p_eft) as the model file writes them (r.role, p.eft)."""
    return re.sub(r"\b([rp])_", r"\1.", value)


# -- the workflow definition -----------------------------------------------------------------

TablePath = tuple[str | int, ...]
"""Where a table sits in the definition: (), ("roles", 0), ("areas", 1, "phases", 2)."""

KeySpec = Mapping[str, tuple[bool, type]]
"""Each key a table may hold: whether it is required, and the type of its value."""

TOP_KEYS: KeySpec = {"actions": (True, list), "roles": (True, list), "areas": (True, list)}
ROLE_KEYS: KeySpec = {
    "id": (True, str),
    "label": (True, str),
    "kind": (True, str),
    "description": (False, str),
}
AREA_KEYS: KeySpec = {"id": (True, str), "label": (True, str), "phases": (False, list)}
PHASE_KEYS: KeySpec = {
    "id": (True, str),
    "label": (True, str),
    "description": (False, str),
    "responsible": (False, str),
    "transition": (False, str),
}
ARRAY_HEADER = re.compile(r"\s*\[\[\s*([\w.]+)\s*\]\]")
TABLE_HEADER = re.compile(r"\s*\[\s*([\w.]+)\s*\]")
KEY_LINE = re.compile(r"\s*([\w-]+)\s*=\s*")


class _TomlPositions:
    """Line and column of the tables and keys of a TOML text, found by scanning its lines.

    tomllib reports no positions, so a table is found by counting its [[...]] headers in order
    (the third [[areas.phases]] after the second [[areas]] is ("areas", 1, "phases", 2)).
    """

    def __init__(self, text: str) -> None:
        self.tables: dict[TablePath, int] = {(): 1}
        self.keys: dict[tuple[TablePath, str], tuple[int, int]] = {}
        self._last: dict[str, TablePath] = {}
        self._counts: dict[tuple[TablePath, str], int] = {}
        current: TablePath = ()
        for number, line in numbered_lines(text):
            if header := ARRAY_HEADER.match(line):
                current = self._enter(header[1], number)
                self.tables.setdefault(current, number)
            elif header := TABLE_HEADER.match(line):
                current = ("[table]", header[1])
                self.keys.setdefault(((), header[1].split(".")[0]), (number, 1))
            elif key := KEY_LINE.match(line):
                self.keys.setdefault((current, key[1]), (number, key.end() + 1))

    def _enter(self, name: str, number: int) -> TablePath:
        """The path of the next table of array `name` (e.g. areas.phases under the last area)."""
        head, _, leaf = name.rpartition(".")
        parent = self._last.get(head, ()) if head else ()
        self.keys.setdefault((parent, leaf), (number, 1))
        index = self._counts.get((parent, leaf), 0)
        self._counts[(parent, leaf)] = index + 1
        self._last[name] = (*parent, leaf, index)
        return self._last[name]

    def at(self, table: TablePath, key: str | None = None) -> tuple[int, int]:
        """Position of a table's key, else of its header, else of the parent key holding it."""
        if key is not None and (table, key) in self.keys:
            return self.keys[(table, key)]
        if table in self.tables:
            return (self.tables[table], 1)
        return self.at(table[:-2], str(table[-2])) if len(table) >= 2 else (1, 1)


def check_definition_text(text: str, path: str) -> tuple[Workflow | None, list[Problem]]:
    """The workflow definition if it is sound, else None and every problem found."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+), column (\d+)", str(exc))
        where = (int(found[1]), int(found[2])) if found else (len(text.split("\n")), 1)
        return None, [_problem(path, where, "WA201", f"not valid TOML: {exc}")]
    at = _TomlPositions(text)
    problems = _structure_problems(data, at, path)
    if problems:
        return None, problems
    workflow = _unvalidated_workflow(data)
    problems = _definition_problems(workflow, at, path)
    if problems:
        return None, problems
    try:
        return parse_workflow(data), []
    except DefinitionError as exc:  # a rule the service has that this checker does not know
        return None, [_problem(path, (1, 1), "WA202", f"the service refuses it: {exc}")]


def _structure_problems(data: dict[str, Any], at: _TomlPositions, path: str) -> list[Problem]:
    """Required keys present, values of the right type, no unknown keys."""
    problems = _table_problems(data, TOP_KEYS, (), at, path)
    if not all(isinstance(a, str) for a in _list(data, "actions")):
        problems.append(_problem(path, at.at((), "actions"), "WA202", "actions must be strings"))
    for i, role in enumerate(_tables(data, "roles", (), at, path, problems)):
        problems += _table_problems(role, ROLE_KEYS, ("roles", i), at, path)
    for i, area in enumerate(_tables(data, "areas", (), at, path, problems)):
        problems += _table_problems(area, AREA_KEYS, ("areas", i), at, path)
        for j, phase in enumerate(_tables(area, "phases", ("areas", i), at, path, problems)):
            problems += _table_problems(phase, PHASE_KEYS, ("areas", i, "phases", j), at, path)
    return problems


def _list(table: Mapping[str, Any], key: str) -> list[Any]:
    """The list under `key`: empty when absent or not a list (_table_problems reports that)."""
    value = table.get(key, [])
    return value if isinstance(value, list) else []


def _tables(
    table: dict[str, Any],
    key: str,
    where: TablePath,
    at: _TomlPositions,
    path: str,
    out: list[Problem],
) -> list[dict[str, Any]]:
    """The array of tables under `key`; reports (into `out`) a list holding anything else."""
    value = _list(table, key)
    if all(isinstance(t, dict) for t in value):
        return value
    header = "areas.phases" if where else key
    message = f"{key} must be an array of tables, each written [[{header}]]"
    out.append(_problem(path, at.at(where, key), "WA202", message))
    return []


def _table_problems(
    table: dict[str, Any], keys: KeySpec, where: TablePath, at: _TomlPositions, path: str
) -> list[Problem]:
    """Missing required keys, values of the wrong type and unknown keys of one table."""
    name = _table_name(table, where)
    problems = [
        _problem(path, at.at(where), "WA202", f"{name} lacks `{key}`")
        for key, (required, _) in keys.items()
        if required and key not in table
    ]
    for key, value in table.items():
        if key not in keys:
            message = f"{name}: unknown key `{key}` (known keys: {', '.join(keys)})"
            problems.append(_problem(path, at.at(where, key), "WA212", message))
        elif not isinstance(value, keys[key][1]):
            kind = "a string" if keys[key][1] is str else "an array"
            message = f"{name}: `{key}` must be {kind}"
            problems.append(_problem(path, at.at(where, key), "WA202", message))
    return problems


def _table_name(table: Mapping[str, Any], where: TablePath) -> str:
    """How a message names a table: 'role 'mentor'', 'phase #2', 'the definition'."""
    if not where:
        return "the definition"
    kind = str(where[-2]).removesuffix("s")
    ident = table.get("id")
    return f"{kind} {ident!r}" if isinstance(ident, str) else f"{kind} #{int(where[-1]) + 1}"


def _unvalidated_workflow(data: Mapping[str, Any]) -> Workflow:
    """The definition as a Workflow before its rules are checked, so checks can read it."""
    roles = tuple(
        Role(r["id"], r["label"], r["kind"], r.get("description", "")) for r in data["roles"]
    )
    areas = tuple(
        Area(a["id"], a["label"], tuple(_phase(p) for p in a.get("phases", [])))
        for a in data["areas"]
    )
    return Workflow(roles=roles, areas=areas, actions=tuple(data["actions"]))


def _phase(p: Mapping[str, Any]) -> Phase:
    return Phase(
        p["id"], p["label"], p.get("description", ""), p.get("responsible"), p.get("transition")
    )


def _definition_problems(workflow: Workflow, at: _TomlPositions, path: str) -> list[Problem]:
    """Identifier syntax, unique ids, phases and their responsible roles, roles, actions."""
    problems: list[Problem] = []
    for kind, ids in _id_lists(workflow):
        problems += _id_problems(kind, ids, at, path)
    for i, area in enumerate(workflow.areas):
        problems += _phase_problems(workflow, area, i, at, path)
    return problems + _role_problems(workflow, at, path) + _action_problems(workflow, at, path)


Located = tuple[str, TablePath, str]
"""An id, the table it is written in and its key."""


def _id_lists(workflow: Workflow) -> list[tuple[str, list[Located]]]:
    """Each list of ids that must be unique, with where each id is written."""
    lists: list[tuple[str, list[Located]]] = [
        ("role", [(r.id, ("roles", i), "id") for i, r in enumerate(workflow.roles)]),
        ("area", [(a.id, ("areas", i), "id") for i, a in enumerate(workflow.areas)]),
        ("action", [(action, (), "actions") for action in workflow.actions]),
    ]
    for i, area in enumerate(workflow.areas):
        ids: list[Located] = [
            (p.id, ("areas", i, "phases", j), "id") for j, p in enumerate(area.phases)
        ]
        lists.append((f"area {area.id!r}: phase", ids))
    return lists


def _id_problems(kind: str, ids: list[Located], at: _TomlPositions, path: str) -> list[Problem]:
    """Ids that are not identifiers, and ids written a second time."""
    problems: list[Problem] = []
    first: dict[str, int] = {}
    for ident, table, key in ids:
        position = at.at(table, key)
        if not is_identifier(ident):
            problems.append(_problem(path, position, "WA203", _not_identifier(kind, ident)))
        elif ident in first:
            message = f"{kind} {ident!r} is defined twice (first at line {first[ident]})"
            problems.append(_problem(path, position, "WA204", message))
        first.setdefault(ident, position[0])
    return problems


def _not_identifier(what: str, value: str) -> str:
    """Why a value is not an identifier, suggesting the lowercase form when that is the fix."""
    if is_identifier(value.lower()):
        return f"{what} {value!r} must be lowercase: {value.lower()!r}"
    return (
        f"{what} {value!r} is not an identifier: lowercase letters, digits and _, "
        "starting with a letter, at most 64 characters"
    )


def _phase_problems(
    workflow: Workflow, area: Area, i: int, at: _TomlPositions, path: str
) -> list[Problem]:
    """An area has phases; each non-final phase has a staff responsible role, the final none."""
    if not area.phases:
        return [
            _problem(path, at.at(("areas", i), "id"), "WA205", f"area {area.id!r} has no phases")
        ]
    problems: list[Problem] = []
    for j, phase in enumerate(area.phases):
        table: TablePath = ("areas", i, "phases", j)
        position = at.at(table, "responsible")
        code, message = _responsible_problem(workflow, area, phase)
        if code:
            problems.append(_problem(path, position, code, message))
    return problems


def _responsible_problem(workflow: Workflow, area: Area, phase: Phase) -> tuple[str, str]:
    """The code and message of what is wrong with a phase's responsible role ('' when nothing)."""
    name = f"phase {phase.id!r} of area {area.id!r}"
    role = workflow.role(phase.responsible) if phase.responsible else None
    if area.is_final(phase.id):
        if phase.responsible is None:
            return "", ""
        return "WA209", f"{name} is final: nothing advances it, so remove `responsible`"
    if phase.responsible is None:
        return "WA209", f"{name} is not final: set `responsible` to the staff role that advances it"
    if role is None:
        known = ", ".join(r.id for r in workflow.roles)
        return "WA208", f"{name}: unknown responsible role {phase.responsible!r} (roles: {known})"
    if role.kind == "audience":
        return "WA210", f"{name}: {role.id!r} is an audience; audiences never advance a phase"
    return "", ""


def _role_problems(workflow: Workflow, at: _TomlPositions, path: str) -> list[Problem]:
    """Each role's kind is audience or staff; the catalogue has at least one of each."""
    problems = [
        _problem(
            path,
            at.at(("roles", i), "kind"),
            "WA206",
            f"role {r.id!r}: kind must be audience or staff, not {r.kind!r}",
        )
        for i, r in enumerate(workflow.roles)
        if r.kind not in ("audience", "staff")
    ]
    for kind, roles in (("audience", workflow.audiences), ("staff", workflow.staff)):
        if not roles:
            message = f"the role catalogue needs at least one role of kind {kind!r}"
            problems.append(_problem(path, at.at(("roles", 0)), "WA207", message))
    return problems


def _action_problems(workflow: Workflow, at: _TomlPositions, path: str) -> list[Problem]:
    """The actions are the three the service implements."""
    if set(workflow.actions) == set(ACTIONS):
        return []
    message = f"actions must be {list(ACTIONS)}, not {list(workflow.actions)}"
    return [_problem(path, at.at((), "actions"), "WA211", message)]


# -- policy CSV ------------------------------------------------------------------------------

COLUMN_NAMES = ("type", *FIELDS)


def parse_policy_text(text: str, path: str) -> tuple[list[PolicyLine], list[Problem]]:
    """The rows of a casbin policy CSV with their line numbers, and the problems of its syntax.

    A row whose six fields are well formed is returned even when its spacing is not canonical
    (casbin strips it, and WA304 reports it); a row with any other problem is left out.
    """
    rows: list[PolicyLine] = []
    problems: list[Problem] = []
    for number, line in numbered_lines(text):
        if is_blank_or_comment(line):
            continue
        row, found = _parse_policy_line(line, number, path)
        problems += found
        if row is not None:
            rows.append(row)
    return rows, problems


def _parse_policy_line(
    line: str, number: int, path: str
) -> tuple[PolicyLine | None, list[Problem]]:
    """One row: six fields, `p` first, no empty field, identifiers, canonical spacing."""
    parts = line.split(",")
    if len(parts) != 6:
        message = (
            f"a policy row has 6 comma-separated fields (p, {', '.join(FIELDS)}); "
            f"this one has {len(parts)}"
        )
        return None, [Problem(path, number, 1, "WA301", message)]
    starts = [1 + sum(len(p) + 1 for p in parts[:i]) for i in range(6)]
    values = [p.strip() for p in parts]
    columns = [s + len(p) - len(p.lstrip()) for s, p in zip(starts, parts, strict=True)]
    problems = [
        Problem(path, number, columns[i], code, message)
        for i, value in enumerate(values)
        for code, message in [_value_problem(i, value)]
        if code
    ]
    row = None if problems else _policy_line(number, values, columns)
    spacing = _spacing_problem(parts, starts)
    if spacing is not None:
        problems.append(Problem(path, number, spacing[0], "WA304", spacing[1]))
    return row, problems


def _policy_line(number: int, values: list[str], columns: list[int]) -> PolicyLine:
    tenant, role, area, phase, action = values[1:]
    return PolicyLine(number, (tenant, role, area, phase, action), tuple(columns[1:]))


def _value_problem(index: int, value: str) -> tuple[str, str]:
    """The code and message of what is wrong with one field ('' when nothing)."""
    name = COLUMN_NAMES[index]
    if not value:
        return "WA303", f"field {index + 1} ({name}) is empty"
    if index == 0:
        return ("", "") if value == "p" else ("WA302", f"a policy row starts with p, not {value!r}")
    return ("", "") if is_identifier(value) else ("WA305", _not_identifier(name, value))


def _spacing_problem(parts: Sequence[str], starts: Sequence[int]) -> tuple[int, str] | None:
    """The first place where a row differs from `p, a, b, c, d, e`: one space after each comma."""
    if parts[0] != parts[0].lstrip():
        return starts[0], f"the row starts with whitespace; write it as `{CANONICAL_ROW}`"
    for i, part in enumerate(parts):
        lead = part[: len(part) - len(part.lstrip())]
        if i > 0 and part.strip() and lead != " ":
            found = repr(lead) if lead else "none"
            return starts[i], f"write exactly one space after each comma (found {found})"
        if part.strip() and part != part.rstrip():
            where = "at the end of the line" if i == 5 else "before a comma"
            return starts[i] + len(part.rstrip()), f"remove the whitespace {where}"
    return None


def policy_problems(
    rows: Sequence[PolicyLine], path: str, workflow: Workflow | None
) -> list[Problem]:
    """Duplicates; with a definition also unknown ids, the advance rule and audience rights."""
    unique, problems = _unique_rows(rows, path)
    if workflow is None:
        return problems
    known: list[PolicyLine] = []
    for row in unique:
        found = _unknown_problems(row, path, workflow)
        problems += found
        if not found:
            known.append(row)
    audience = _audience_problems(known, path, workflow)
    flagged = {p.line for p in audience}
    problems += audience
    return problems + _advance_problems([r for r in known if r.line not in flagged], path, workflow)


def check_policy_text(
    text: str, path: str, workflow: Workflow | None
) -> tuple[list[PolicyLine], list[Problem]]:
    """Parse and check a policy CSV: its rows and every problem of the file."""
    rows, problems = parse_policy_text(text, path)
    problems += policy_problems(rows, path, workflow)
    if not rows and not problems:
        problems.append(Problem(path, 1, 1, "WA315", "no policy rows, only comments"))
    return rows, problems


def _unique_rows(rows: Sequence[PolicyLine], path: str) -> tuple[list[PolicyLine], list[Problem]]:
    """Rows with later duplicates removed, and a problem for each duplicate."""
    first: dict[Row, int] = {}
    unique: list[PolicyLine] = []
    problems: list[Problem] = []
    for row in rows:
        if row.row in first:
            message = f"duplicate of the row at line {first[row.row]}; remove it"
            problems.append(Problem(path, row.line, 1, "WA310", message))
        else:
            first[row.row] = row.line
            unique.append(row)
    return unique, problems


def _unknown_problems(row: PolicyLine, path: str, workflow: Workflow) -> list[Problem]:
    """Role, area, phase (of that area) and action must be in the definition."""
    _, role, area_id, phase, action = row.row
    area = workflow.area_by_id.get(area_id)
    checks = [
        (
            ROLE,
            "WA306",
            role in workflow.role_ids,
            f"role {role!r}",
            [r.id for r in workflow.roles],
        ),
        (AREA, "WA307", area is not None, f"area {area_id!r}", [a.id for a in workflow.areas]),
        (ACTION, "WA309", action in workflow.actions, f"action {action!r}", workflow.actions),
    ]
    if area is not None:
        phases = [p.id for p in area.phases]
        checks.insert(2, (PHASE, "WA308", phase in phases, f"{area_id} phase {phase!r}", phases))
    return [
        Problem(path, row.line, row.column(i), code, f"unknown {what} (known: {', '.join(known)})")
        for i, code, ok, what, known in checks
        if not ok
    ]


def _audience_problems(rows: Sequence[PolicyLine], path: str, workflow: Workflow) -> list[Problem]:
    """Audiences may only view."""
    audiences = {r.id for r in workflow.audiences}
    return [
        Problem(
            path,
            r.line,
            r.column(ACTION),
            "WA314",
            f"{r.row[ROLE]} is an audience; audiences may only view, never {r.row[ACTION]}",
        )
        for r in rows
        if r.row[ROLE] in audiences and r.row[ACTION] != "view"
    ]


def _advance_problems(rows: Sequence[PolicyLine], path: str, workflow: Workflow) -> list[Problem]:
    """Per tenant and area: one advance row on each non-final phase, none on the final one."""
    by_tenant: dict[str, list[PolicyLine]] = {}
    for row in rows:
        by_tenant.setdefault(row.row[TENANT], []).append(row)
    return [
        problem
        for tenant, tenant_rows in by_tenant.items()
        for area in workflow.areas
        for phase in area.phases
        for problem in _phase_advance_problems(tenant, tenant_rows, area, phase, path)
    ]


def _phase_advance_problems(
    tenant: str, rows: Sequence[PolicyLine], area: Area, phase: Phase, path: str
) -> list[Problem]:
    """The advance rows of one tenant's phase: exactly one, or none when the phase is final."""
    advancers = [r for r in rows if r.row[AREA:] == (area.id, phase.id, "advance")]
    name = f"tenant {tenant!r}: {area.id} phase {phase.id!r}"
    if area.is_final(phase.id):
        return [
            Problem(
                path, r.line, 1, "WA313", f"{name} is final: nothing advances it; remove this row"
            )
            for r in advancers
        ]
    if not advancers:
        in_area = [r for r in rows if r.row[AREA] == area.id] or list(rows)
        role = phase.responsible or "ROLE"
        message = (
            f"{name} has no advance row, so it can never complete; add exactly one, such as "
            f"`p, {tenant}, {role}, {area.id}, {phase.id}, advance`"
        )
        return [Problem(path, in_area[0].line, 1, "WA311", message)]
    first = advancers[0]
    return [
        Problem(
            path,
            r.line,
            1,
            "WA312",
            f"{name} is already advanced by {first.row[ROLE]} "
            f"(line {first.line}); exactly one role advances a phase",
        )
        for r in advancers[1:]
    ]


# -- files and folders -----------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyFiles:
    """The files a list of paths names, by kind, in the order given."""

    models: tuple[Path, ...] = ()
    definitions: tuple[Path, ...] = ()
    policies: tuple[Path, ...] = ()
    cases: tuple[Path, ...] = ()
    unknown: tuple[Path, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.models or self.definitions or self.policies or self.cases)


@dataclass(frozen=True)
class CheckResult:
    """Every problem found, the definition the rows were checked against, and each file's rows."""

    problems: list[Problem]
    workflow: Workflow | None
    rows: dict[str, list[PolicyLine]]

    def all_rows(self) -> list[Row]:
        return [r.row for rows in self.rows.values() for r in rows]


def file_kind(path: Path) -> Kind | None:
    """A file's kind by name: *.conf model, *.toml definition, *cases*.csv cases, *.csv policy."""
    suffix = path.suffix.lower()
    if suffix == ".conf":
        return "model"
    if suffix == ".toml":
        return "definition"
    if suffix == ".csv":
        return "cases" if "cases" in path.stem.lower() else "policy"
    return None


def collect(paths: Iterable[Path]) -> PolicyFiles:
    """Files of each kind: files as given, and in a folder model.conf, workflow.toml and *.csv."""
    found: dict[str, list[Path]] = {"model": [], "definition": [], "policy": [], "cases": []}
    unknown: list[Path] = []
    for path in dict.fromkeys(_expand(paths)):
        kind = file_kind(path)
        (found[kind] if kind else unknown).append(path)
    return PolicyFiles(
        tuple(found["model"]),
        tuple(found["definition"]),
        tuple(found["policy"]),
        tuple(found["cases"]),
        tuple(unknown),
    )


def _expand(paths: Iterable[Path]) -> list[Path]:
    """Each path, a folder replaced by its checkable files (not recursive, hidden ones skipped)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if _in_folder(p))
        else:
            files.append(path)
    return files


def _in_folder(path: Path) -> bool:
    name = path.name
    if name.startswith(".") or path.is_dir():
        return False
    return name in ("model.conf", "workflow.toml") or name.lower().endswith(".csv")


def check_files(files: PolicyFiles, default_definition: Path) -> CheckResult:
    """Check every model, definition and policy file (case files are casetests' job).

    Policy rows are checked against the first definition among the files, else (when there are
    policy or case files to check) against `default_definition`.
    """
    problems = [p for path in files.models for p in _check_model_file(path)]
    definitions = files.definitions
    if not definitions and (files.policies or files.cases):
        definitions = (default_definition,)
    checked = [_check_definition_file(path) for path in definitions]
    problems += [p for _, found in checked for p in found]
    workflow = checked[0][0] if checked else None
    rows: dict[str, list[PolicyLine]] = {}
    for path in files.policies:
        text, found = read_source(path)
        if text is not None:
            rows[str(path)], found = check_policy_text(text, str(path), workflow)
        problems += found
    return CheckResult(problems + _shared_tenant_problems(rows), workflow, rows)


def _check_model_file(path: Path) -> list[Problem]:
    text, problems = read_source(path)
    return problems if text is None else check_model_text(text, str(path))


def _check_definition_file(path: Path) -> tuple[Workflow | None, list[Problem]]:
    text, problems = read_source(path)
    return (None, problems) if text is None else check_definition_text(text, str(path))


def _shared_tenant_problems(rows: Mapping[str, Sequence[PolicyLine]]) -> list[Problem]:
    """A tenant's rows live in one file: each file is checked as whole policies."""
    owner: dict[str, tuple[str, int]] = {}
    problems: list[Problem] = []
    for path, lines in rows.items():
        for line in lines:
            tenant = line.row[TENANT]
            if tenant in owner and owner[tenant][0] != path:
                other, at = owner[tenant]
                message = f"tenant {tenant!r} already has rows in {other} (line {at}); keep a "
                message += "tenant's rows in one file"
                problems.append(Problem(path, line.line, line.column(TENANT), "WA316", message))
                break
            owner.setdefault(tenant, (path, line.line))
    return problems


# -- output ----------------------------------------------------------------------------------


def render(problems: Sequence[Problem], fmt: Format = "text") -> str:
    """Problems as `path:line:column: CODE message` lines, GitHub annotations, or a JSON list."""
    if fmt == "json":
        return json.dumps([asdict(p) for p in problems], indent=2)
    line: Callable[[Problem], str] = _github_line if fmt == "github" else _text_line
    return "\n".join(line(p) for p in problems)


def _text_line(p: Problem) -> str:
    return f"{p.path}:{p.line}:{p.column}: {p.code} {p.message}"


def _github_line(p: Problem) -> str:
    """A GitHub Actions workflow command, escaped as the runner expects."""
    props = f"file={_escape(p.path, True)},line={p.line},col={p.column},title={p.code}"
    return f"::error {props}::{_escape(p.message, False)}"


def _escape(value: str, is_property: bool) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return value.replace(":", "%3A").replace(",", "%2C") if is_property else value
