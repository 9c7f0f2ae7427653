"""bench/propagation.py in its quick mode: two servers on PostgreSQL, one well-formed table."""

from __future__ import annotations

import pytest

from bench import propagation
from tests.bench_tables import cell, table


@pytest.mark.postgres
def test_quick_run_prints_the_table(pg_template: str, capsys: pytest.CaptureFixture[str]) -> None:
    # pg_template: PostgreSQL must answer (mandatory in CI, skipped elsewhere); the bench makes
    # and drops a database of its own.
    assert propagation.main(["--quick"]) == 0
    header, rows = table(capsys.readouterr().out)
    assert tuple(header) == propagation.COLUMNS
    assert [r["writer"] for r in rows] == ["admin", "store"]
    for row in rows:
        assert row["changes"] == "3"
        assert row["stale answers"] == "0"  # no old answer once the save had committed
        assert row["polls/change"].endswith("(max 1)")  # the very next request had it
        assert cell(row, "p99 ≤") in {"met", "MISSED"}
