"""bench/hostile.py in its quick mode: a real `workflow-authz serve` (one worker) answers every
normal POST /authorize while slow-header and slow-body sockets are held open beside it -- and
still open when the normal clients finish. Success rate only; timings are printed, never
asserted. (Against gunicorn's sync worker, which `serve` ran before, no request was answered.)"""

from __future__ import annotations

import pytest

from bench import hostile
from tests.bench_tables import cell, table


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_quick_run_answers_every_request_beside_slow_sockets(
    backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hostile.main(["--quick", "--backend", backend]) == 0
    header, rows = table(capsys.readouterr().out)
    assert tuple(header) == hostile.COLUMNS
    idle, beside = rows
    assert idle["load"] == "idle" and beside["load"] == "20 + 20 slow sockets"
    slow = hostile.QUICK["slow"]
    assert (beside["slow-header held"], beside["slow-body held"]) == (f"{slow}/{slow}",) * 2
    requests = str(hostile.QUICK["requests"])
    for row in rows:
        assert row["requests"] == row["answered"] == requests
        assert cell(row, "success") == "100.0% met"
        assert cell(row, "p99 vs idle") == "—"
