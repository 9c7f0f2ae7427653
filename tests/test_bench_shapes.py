"""bench/shapes.py in its quick mode: every candidate accepts the two valid bodies and refuses the
three invalid ones alike, and the table has a row per candidate. Timings are printed, never
asserted."""

from __future__ import annotations

import pytest

from bench import shapes
from bench.cli import progress


def test_every_candidate_accepts_and_refuses_the_same_bodies() -> None:
    timings, disagree = shapes.run(True, progress())
    assert disagree == []
    assert set(timings) == {
        f"{n}/{part}" for n in shapes.CANDIDATES for part in ("parse", "answer")
    }


def test_the_table_has_a_row_per_candidate_and_a_verdict() -> None:
    printed = shapes.render(shapes.run(True, progress()), True)
    rows = [line for line in printed.splitlines() if line.startswith("|")][2:]
    assert [r.split("|")[1].strip() for r in rows] == list(shapes.CANDIDATES)
    assert all(r.rstrip(" |").endswith(("met", "MISSED")) for r in rows)


def test_a_candidate_that_accepts_an_invalid_body_fails_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lenient = dict(shapes.CANDIDATES)
    lenient["lenient"] = (lambda raw: raw, shapes.CANDIDATES["msgspec"][1])
    monkeypatch.setattr(shapes, "CANDIDATES", lenient)
    _, disagree = shapes.run(True, progress())
    assert disagree == ["lenient"]
    assert shapes.main(["--quick"]) == 1
