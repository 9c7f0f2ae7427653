"""bench/scale.py in its quick mode: stores of 1 and 10 tenants, one well-formed table."""

from __future__ import annotations

import pytest

from bench import scale
from tests.bench_tables import cell, table, verdict


def test_quick_run_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert scale.main(["--quick", "--backend", "sqlite", "--tenants", "1,10"]) == 0
    header, rows = table(capsys.readouterr().out)
    assert tuple(header) == scale.COLUMNS
    assert [(r["tenants"], r["backend"]) for r in rows] == [("1", "sqlite"), ("10", "sqlite")]
    one, ten = rows
    assert cell(one, "vs 1 tenant") == cell(one, "1 tenant µs") == "—"
    assert verdict(cell(ten, "vs 1 tenant")) and float(cell(ten, "1 tenant µs")) > 0
    for row in rows:
        assert verdict(cell(row, "first answer s")) and verdict(cell(row, "RSS MiB all"))
        assert row["answers"].startswith("all ")  # every checked answer right
