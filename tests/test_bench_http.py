"""bench/http.py in its quick mode: wrk against real servers prints one well-formed table."""

from __future__ import annotations

import pytest

from bench import http
from tests.bench_tables import cell, require_wrk, table, verdict


def test_quick_run_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    require_wrk()
    assert http.main(["--quick", "--backend", "sqlite"]) == 0
    header, rows = table(capsys.readouterr().out)
    assert tuple(header) == http.COLUMNS
    assert [(r["endpoint"], r["backend"]) for r in rows] == [
        ("constant", "—"),
        ("authorize", "sqlite"),
        ("batch ×100", "sqlite"),
    ]
    assert [r["errors"] for r in rows] == ["0", "0", "0"]  # no failed request, no wrong answer
    constant, single, batch = rows
    assert cell(constant, "vs constant") == cell(constant, "batch/single") == "—"
    assert verdict(cell(single, "vs constant")) and cell(single, "batch/single") == "—"
    assert verdict(cell(batch, "batch/single")) and cell(batch, "vs constant") == "—"
    assert int(batch["decisions/s"].replace(",", "")) > 0
