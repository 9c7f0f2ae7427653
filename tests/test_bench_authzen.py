"""bench/authzen.py in its quick mode: wrk and sequential searches against a real server print
one well-formed table, with every answer checked and the page statement on its index."""

from __future__ import annotations

import pytest

from bench import authzen
from tests.bench_tables import cell, require_wrk, table, verdict


def test_quick_run_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    require_wrk()
    assert authzen.main(["--quick", "--backend", "sqlite"]) == 0
    header, rows = table(capsys.readouterr().out)
    assert tuple(header) == authzen.COLUMNS
    assert [(r["row"], r["backend"], r["assessments"]) for r in rows] == [
        ("authorize", "sqlite", "25"),
        ("evaluation", "sqlite", "25"),
        ("batch ×100", "sqlite", "25"),
        ("evaluations ×100", "sqlite", "25"),
        ("search page 1 ×10", "sqlite", "200"),
        ("search page 1 ×10", "sqlite", "2,000"),
        ("search page 1 ×100", "sqlite", "2,000"),
        ("search walk ×100", "sqlite", "2,000"),
    ]
    assert [r["errors"] for r in rows] == ["0"] * 8  # no failed request, no wrong answer
    authorize, evaluation, batch, boxcar, small, large, wide, walk = rows
    assert float(cell(evaluation, "ratio")) > 0 and evaluation["vs"] == "authorize"
    assert float(cell(boxcar, "ratio")) > 0 and boxcar["vs"] == "batch ×100"
    assert verdict(cell(large, "ratio")) and large["vs"] == "200 assessments"
    assert verdict(cell(walk, "ratio")) and walk["vs"] == "page 1 ×100"
    for row in (authorize, batch, small, wide):
        assert cell(row, "ratio") == row["vs"] == "—"
    for row in (authorize, evaluation, batch, boxcar):
        assert row["plan"] == "—"
    for row in (small, large, wide, walk):
        assert row["plan"].startswith("ix_assessments_place ×")


def test_the_plan_column_says_what_the_page_statement_reads() -> None:
    one = "SEARCH assessments USING COVERING INDEX ix_assessments_place (tenant=? AND area=?"
    assert authzen.plan_summary(one) == "ix_assessments_place ×1"
    assert authzen.plan_summary("SCAN assessments") == "TABLE SCAN"
    assert authzen.plan_summary("Seq Scan on assessments") == "TABLE SCAN"
    other = "Index Scan using assessments_pkey on assessments"
    assert authzen.plan_summary(other) == "NOT ix_assessments_place"
    two = "Merge Append\n Index Only Scan using ix_assessments_place\n ... ix_assessments_place"
    assert authzen.plan_summary(two) == "ix_assessments_place ×2"
