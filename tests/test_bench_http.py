"""bench/http.py in its quick mode: wrk against real servers prints one well-formed table."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import http
from tests.bench_tables import cell, table, verdict
from tests.conftest import IN_CI


def _require_wrk() -> None:
    if Path(http.WRK).exists():
        return
    if IN_CI:
        pytest.fail(f"CI=true but {http.WRK} is missing: the test set-up installs Debian's wrk")
    pytest.skip(f"{http.WRK} is not installed (apt-get install wrk); CI=true requires it")


def test_quick_run_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    _require_wrk()
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
