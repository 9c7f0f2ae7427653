"""bench/servers.py in its quick mode, on two candidates: every server up and timed, one
well-formed table; the slow-client runs tell the old server (gunicorn sync, which gives no normal
request an answer beside 5 slow sockets on its one worker) from the chosen one (which answers
every one). Timings are printed, never asserted."""

from __future__ import annotations

import pytest

from bench import servers
from tests.bench_tables import require_wrk, table


def test_quick_run_prints_the_table_and_tells_who_survives(
    capsys: pytest.CaptureFixture[str],
) -> None:
    require_wrk()
    assert servers.main(["--quick", "--only", "granian buffered"]) == 0
    out = capsys.readouterr().out
    header, rows = table(out)
    assert tuple(header) == servers.COLUMNS
    assert [(r["server"], r["workers"]) for r in rows] == [
        ("gunicorn sync", "1"),
        ("granian buffered", "1"),
    ]
    sync, chosen = rows
    assert sync["vs sync"] == "1.00" and float(chosen["vs sync"]) > 0
    assert (sync["slow headers: answered"], sync["slow bodies: answered"]) == ("0/4", "0/4")
    assert (chosen["slow headers: answered"], chosen["slow bodies: answered"]) == ("4/4", "4/4")
    assert (sync["survives"], chosen["survives"]) == ("NO", "yes")
    assert "Winner (survives every slow-client run, then the highest authorize rate vs " in out
    assert "gunicorn sync): granian buffered." in out
