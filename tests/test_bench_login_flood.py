"""bench/login_flood.py in its quick mode: a real server, the probe idle and beside each flood,
one well-formed table; the floods are answered only as failures (never 5xx, never a login) and
the probe never errs. Timings are printed, never asserted."""

from __future__ import annotations

import pytest

from bench import login_flood
from tests.bench_tables import cell, require_wrk, table, verdict


def test_quick_run_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    require_wrk()
    assert login_flood.main(["--quick"]) == 0
    header, rows = table(capsys.readouterr().out)
    assert tuple(header) == login_flood.COLUMNS
    assert [r["load beside the probe"] for r in rows] == [
        "nothing (idle)",
        "wrong admin logins",
        "bad API keys",
        "GET /healthz (reference)",
    ]
    assert [r["probe errors"] for r in rows] == ["0"] * 4
    idle, logins, keys, health = rows
    assert idle["flood requests"] == "0" and cell(idle, "p50 vs idle") == "1.00 met"
    for row, allowed in ((logins, {"200", "429"}), (keys, {"401", "429"}), (health, {"200"})):
        assert int(row["flood requests"]) > 0
        answers = {part.split("×")[1] for part in row["flood answers"].split(", ")}
        assert answers <= allowed, row
        assert verdict(cell(row, "p50 vs idle"))
