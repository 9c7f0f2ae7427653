"""model.conf: the one set of rules it must follow, and loading it for the service.

The service decides with casbin's exact-equality model only: request and policy are both
tenant, role, area, phase, action; the matcher is r.X == p.X for each field joined by &&; the
effect is some-allow. `check_model_text` says, with positions, where a text breaks those rules
(the checker reports its findings); `load_model` refuses to start on any of them. casbin parses
the text; positions come from scanning its lines with casbin's grammar (sections, `key = value`,
# and ; comments, \\ continuations), which casbin keeps none of.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casbin.model import Model

from service.checker.problems import Problem, render
from service.checker.sources import numbered_lines, read_source
from service.errors import ServiceError

FIELDS = ("tenant", "role", "area", "phase", "action")
EFFECT = "some(where (p.eft == allow))"
MODEL_KEYS = {
    "request_definition": "r",
    "policy_definition": "p",
    "policy_effect": "e",
    "matchers": "m",
}
TERM = re.compile(r"r_(\w+) *== *p_(\w+)")


class ModelError(ServiceError, ValueError):
    """model.conf is not the exact-equality model this service can decide with."""

    code = "bad_model"


def load_model(path: Path) -> Model:
    """Parse model.conf with casbin, refusing a text that breaks the rules (naming every one)."""
    text, problems = read_source(path)
    if text is not None:
        problems = check_model_text(text, str(path))
    if problems or text is None:
        raise ModelError("; ".join(render(problems).splitlines()))
    model = Model()
    model.load_model_from_text(text)
    return model


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
        return [_parse_problem(exc, path)]
    entries = _model_entries(text)
    first = {(e.section, e.key): e for e in reversed(entries)}
    problems = _layout_problems(entries, path)
    for section, key in MODEL_KEYS.items():
        entry = first.get((section, key))
        if entry is not None:
            problems += _value_problems(key, (model[key] or {}).get(key), entry, path)
    return problems


def _parse_problem(exc: Exception, path: str) -> Problem:
    """casbin's parse error, located at the line it names (else line 1)."""
    line = re.search(r"line (\d+)", str(exc))
    message = f"not a [section], `key = value` or # comment line (casbin: {exc})"
    return Problem(path, int(line.group(1)) if line else 1, 1, "WA101", message)


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


def _layout_problems(entries: Sequence[_Entry], path: str) -> list[Problem]:
    """The four sections each define their one key, once; nothing else is defined."""
    problems: list[Problem] = []
    seen: dict[tuple[str, str], int] = {}
    for e in entries:
        if MODEL_KEYS.get(e.section) != e.key:
            message = f"[{e.section}] {e.key} is not part of the exact-equality model; remove it"
            problems.append(Problem(path, e.line, 1, "WA103", message))
        elif (e.section, e.key) in seen:
            message = f"{e.key} is defined again (first at line {seen[e.section, e.key]})"
            problems.append(Problem(path, e.line, 1, "WA103", message))
        seen.setdefault((e.section, e.key), e.line)
    return problems + [
        Problem(path, 1, 1, "WA102", f"missing `{key} = ...` in section [{section}]")
        for section, key in MODEL_KEYS.items()
        if (section, key) not in seen
    ]


def _value_problems(key: str, assertion: Any, entry: _Entry, path: str) -> list[Problem]:
    """Problems of one definition's value, as casbin parsed it (None when casbin skipped it)."""
    where = (entry.line, entry.column)
    value = "" if assertion is None else str(assertion.value)
    tokens = [] if assertion is None else list(assertion.tokens)
    if key in ("r", "p") and tokens != [f"{key}_{f}" for f in FIELDS]:
        code, what = ("WA104", "request") if key == "r" else ("WA105", "policy")
        message = f"the {what} definition must be `{key} = {', '.join(FIELDS)}`, not `{value}`"
        return [Problem.at(path, where, code, message)]
    if key == "e" and value.replace(" ", "") != EFFECT.replace(".", "_").replace(" ", ""):
        message = f"the effect must be `{EFFECT}`, not `{_dotted(value)}`"
        return [Problem.at(path, where, "WA107", message)]
    if key == "m":
        return [Problem.at(path, where, "WA106", m) for m in _matcher_problems(value)]
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
