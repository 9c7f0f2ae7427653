"""Shapes benchmark: what reading a POST /authorize body and writing its answer costs, per library.

Columns (µs per request, median of interleaved runs over the same bodies):
  parse   the body's bytes to a validated question (unknown fields refused, identifiers checked,
          either an assessment or an area and phase);
  answer  a decision's answer object to JSON bytes;
  total   both, and its difference from the hand-written parsing the service used before.
Rows: `hand-written` (json.loads plus field-by-field checks, json.dumps of a dict: the service's
parsing until shapes were declared), `pydantic` (service.shapes itself: what the service runs) and
`msgspec` (the same shapes as msgspec Structs, the other candidate measured). Every row must
accept the valid bodies and refuse the invalid ones alike; a disagreement fails the run.

    python -m bench.shapes [--quick]
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, get_type_hints

import msgspec

from bench import cli, table
from bench.cli import Progress
from bench.internals import InvalidRequest, shapes
from bench.timing import Timing, interleaved, prepare

TARGET_US = 10.0
"""The issue's budget: declared shapes may cost at most this much more than hand-written code."""
BODIES = [
    b'{"role":"parent","action":"view","assessment":"maths-7b-t1"}',
    b'{"tenant":"default","role":"mentor","action":"edit","area":"behaviour",'
    b'"phase":"organisation_approval"}',
    b'{"role":"Parent","action":"view","assessment":"a1"}',
    b'{"role":"parent","action":"view","assessment":"a1","acton":"x"}',
    b'{"role":"parent","action":"view","assessment":"a1","area":"behaviour"}',
]
"""Two valid questions, then three a client gets a 400 for."""
ANSWER: dict[str, Any] = {
    "decision_id": "0" * 32,
    "allowed": True,
    "tenant": "default",
    "role": "parent",
    "action": "view",
    "area": "assessment",
    "phase": "completed",
    "assessment": "maths-7b-t1",
    "policy_version": 3,
    "rule": ["default", "parent", "assessment", "completed", "view"],
    "reason": "Allowed: parent may view assessment in phase completed (Term assessment completed) "
    "by tenant default's policy.",
}
COLUMNS = table.columns(
    f"| shapes | parse µs | answer µs | total µs | over hand-written µs (≤{TARGET_US:g}) |"
)

# -- hand-written: the parsing the service had before its shapes were declared ----------------

_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*\Z")
_ASSESSMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
_FIELDS = frozenset({"tenant", "role", "action", "assessment", "area", "phase"})


def _identifier(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or len(value) > 64 or not _IDENTIFIER.match(value):
        raise ValueError(name)
    return value


def hand_parse(raw: bytes) -> tuple[str | None, ...]:
    """json.loads, then each field checked by hand (the service's former decisions.py)."""
    body = json.loads(raw)
    if not isinstance(body, dict) or set(body) - _FIELDS:
        raise ValueError("body")
    tenant, role = _identifier(body, "tenant", "default"), _identifier(body, "role")
    action = _identifier(body, "action")
    if "assessment" in body:
        if "area" in body or "phase" in body:
            raise ValueError("area")
        if not isinstance(body["assessment"], str) or not _ASSESSMENT.match(body["assessment"]):
            raise ValueError("assessment")
        return (tenant, role, action, body["assessment"], None, None)
    return (tenant, role, action, None, _identifier(body, "area"), _identifier(body, "phase"))


# -- msgspec: the same shapes as Structs ------------------------------------------------------

_Ident = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
_AssessmentId = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", max_length=128)
]


class _Question(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    role: _Ident
    action: _Ident
    tenant: _Ident = "default"
    assessment: _AssessmentId | None = None
    area: _Ident | None = None
    phase: _Ident | None = None


_Decision = msgspec.defstruct("Decision", list(get_type_hints(shapes.Decision).items()))
"""The service's Decision answer, field for field, as a Struct."""


_DECODE = msgspec.json.Decoder(_Question).decode
_ENCODE = msgspec.json.Encoder().encode


def msgspec_parse(raw: bytes) -> _Question:
    """Decode into a Struct, then the one rule a type cannot say (assessment xor area/phase)."""
    question = _DECODE(raw)
    if question.assessment is not None and (question.area or question.phase):
        raise ValueError("area")
    return question


# -- measuring -------------------------------------------------------------------------------

CANDIDATES: dict[str, tuple[Callable[[bytes], object], Callable[[], bytes]]] = {
    "hand-written": (hand_parse, lambda: json.dumps(ANSWER).encode()),
    "pydantic": (
        lambda raw: shapes.parse_json(shapes.QuestionBody, raw).checked(),
        lambda: shapes.to_json(shapes.Decision(**ANSWER)),
    ),
    "msgspec": (msgspec_parse, lambda: _ENCODE(_Decision(**ANSWER))),
}


def accepted(parse: Callable[[bytes], object]) -> Callable[[bytes], bool]:
    """Whether `parse` accepts a body (so every candidate can be checked to refuse alike)."""

    def check(raw: bytes) -> bool:
        try:
            parse(raw)
        except (ValueError, msgspec.ValidationError, InvalidRequest):
            return False
        return True

    return check


def _ignoring(make: Callable[[], bytes]) -> Callable[[None], bytes]:
    """`make` as a function of one (unused) input, as the timer calls it."""
    return lambda _: make()


def run(quick: bool, say: Progress) -> tuple[dict[str, Timing], list[str]]:
    """Time every candidate's parse and answer, interleaved; the candidates that disagree."""
    seconds, rounds = (0.005, 3) if quick else (0.3, 7)
    runs, disagree = {}, []
    for name, (parse, answer) in CANDIDATES.items():
        say(f"preparing {name}")
        verdicts, runs[(name, "parse")] = prepare(accepted(parse), BODIES, seconds=seconds)
        if verdicts != [True, True, False, False, False]:
            disagree.append(name)
        _, runs[(name, "answer")] = prepare(_ignoring(answer), [None], seconds=seconds)
    say("timing")
    timings = interleaved(runs, rounds)
    return {f"{n}/{part}": t for (n, part), t in timings.items()}, disagree


def render(results: tuple[dict[str, Timing], list[str]], quick: bool) -> str:
    """One row per candidate, with its cost over the hand-written code."""
    timings, disagree = results
    total = {
        n: timings[f"{n}/parse"].us_per_call + timings[f"{n}/answer"].us_per_call
        for n in CANDIDATES
    }
    rows = [
        [
            name + (" (DISAGREES)" if name in disagree else ""),
            f"{timings[f'{name}/parse'].us_per_call:.2f}",
            f"{timings[f'{name}/answer'].us_per_call:.2f}",
            f"{total[name]:.2f}",
            table.at_most(total[name] - total["hand-written"], TARGET_US),
        ]
        for name in CANDIDATES
    ]
    legend = [
        "µs per request: median of interleaved rounds over the same 5 bodies (2 valid, 3 refused).",
        "parse: bytes to a validated question; answer: a decision's answer to JSON bytes.",
    ]
    return table.render(COLUMNS, rows, legend)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print the table; exit 1 when a candidate accepts or refuses differently."""
    quick = cli.parser("bench.shapes", __doc__).parse_args(argv).quick
    return cli.main(quick, run, render, lambda results: bool(results[1]))


if __name__ == "__main__":
    sys.exit(main())
