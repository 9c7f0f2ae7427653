"""bench/soak.py: its quick mode against a real server prints one well-formed table, and its error
and memory accounting counts what it says it counts (never a timing)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from bench import internals, soak, wrk
from bench.server import Sample
from bench.store import Content
from bench.wrk import MARKER, WrkResult
from tests.bench_tables import cell, require_wrk, table, verdict


def _int(value: str) -> int:
    return int(value.replace(",", ""))


def test_quick_run_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    require_wrk()
    code = soak.main(["--quick", "--backend", "sqlite"])
    out = capsys.readouterr().out
    header, rows = table(out)
    assert tuple(header) == soak.COLUMNS
    (row,) = rows
    assert (row["backend"], row["workers"], row["conns"]) == ("sqlite", "2", "2")
    assert _int(row["requests"]) > 0
    # the trickle ran beside wrk, and its correct refusals (the race's loser, 409 past the end,
    # 403 not allowed) were counted as expected, not as failures
    assert _int(row["state changes"]) > 0
    assert _int(row["expected 4xx"]) > 0
    assert row["wrk errors"] == "0"  # no 5xx, no other non-2xx, no socket error, no timeout
    assert row["failed"] == "0"
    assert cell(row, "errors") == "0 met"
    assert verdict(cell(row, "RSS growth"))
    for name in ("RSS MiB after warm-up", "RSS MiB at end"):
        total, _, largest = row[name].partition(" (max ")
        assert float(total) >= float(largest.rstrip(")")) > 0
    met = cell(row, "RSS growth").endswith(" met")
    assert code == (0 if met else 1)
    legend = out.split("\n\n", 1)[1]
    assert "This run: wrk errors 0 (5xx 0, other non-2xx 0" in legend
    assert "409 lost race" in legend and "policy save" in legend


def _wrk_output(statuses: dict[int, int], **socket: int) -> str:
    summary = {"requests": sum(statuses.values()), "duration_us": 1_000_000}
    summary |= {k: socket.get(k, 0) for k in ("connect", "read", "write", "timeout")}
    summary |= {"status": sum(n for s, n in statuses.items() if s > 399), "p50_us": 1, "p99_us": 2}
    counts = json.dumps({str(s): n for s, n in statuses.items()})
    return f"Running 1s test\n{MARKER}{json.dumps(summary)}\n{wrk.STATUS_MARKER}{counts}\n"


def test_every_kind_of_wrk_error_is_counted() -> None:
    clean = wrk.parse_figures(_wrk_output({200: 100}))
    assert (clean.errors, clean.server_errors, clean.unexpected) == (0, 0, 0)
    figures = wrk.parse_figures(
        _wrk_output({200: 90, 500: 1, 503: 2, 404: 3, 409: 1, 302: 1}, read=4, timeout=5)
    )
    assert figures.server_errors == 3
    assert figures.unexpected == 5  # 4xx and 3xx: no valid question gets one
    assert figures.socket == {"connect": 0, "read": 4, "write": 0, "timeout": 5}
    assert figures.errors == 3 + 5 + 9
    with pytest.raises(RuntimeError, match="no summary"):
        wrk.parse_figures(f"{MARKER}{{}}\n")


def test_expected_status_follows_the_policy_and_the_ends_of_the_area() -> None:
    workflow = internals.workflow()
    cells = Content(workflow, 1).cells(0)
    area = workflow.area_by_id["behaviour"]
    first, middle, final = area.phases
    assert soak.expected_status(cells, "mentor", area, first, "advance") == 200
    assert soak.expected_status(cells, "headteacher", area, final, "reopen") == 200
    refused = next(
        r.id for r in workflow.roles if (r.id, area.id, first.id, "advance") not in cells
    )
    assert soak.expected_status(cells, refused, area, first, "advance") == 403
    assert soak.expected_status(cells, "mentor", area, final, "advance") == 409
    assert soak.expected_status(cells, "learner", area, first, "reopen") == 409
    assert middle.id == "organisation_approval"


def _result(failures: int, growth_to: float) -> soak.Result:
    options = soak.Options(seconds=100, sample_every=1.0)  # warm-up 10 s, windows 5 s
    samples = [Sample(float(t), {1: 50.0, 2: 50.0}) for t in range(0, 95)]
    samples += [Sample(float(t), {1: growth_to / 2, 2: growth_to / 2}) for t in range(95, 101)]
    tally = soak.Tally(calls=Counter({"advance": 10, "policy save": 2}))
    tally.refused["409 lost race"] += 4
    for _ in range(failures):
        tally.fail("advance", "500 instead of 200")
    figures = wrk.WrkFigures(
        WrkResult(requests=1000, seconds=100.0, errors=0, p50_us=1000, p99_us=5000),
        statuses={200: 999, 503: 1},
        socket={"connect": 0, "read": 0, "write": 0, "timeout": 0},
    )
    return soak.Result(
        options=options,
        wrk=figures,
        tally=tally,
        memory=soak.memory(samples, options),
        wrong_answers=1,
        restarts=1,
        log_errors=2,
    )


def test_errors_and_growth_are_judged_in_the_table() -> None:
    result = _result(failures=3, growth_to=115.0)
    assert result.memory.after_warmup == (100.0, 50.0)  # the window just after the warm-up
    assert result.memory.at_end == (115.0, 57.5)  # the last window, not the peak of the run
    assert result.memory.growth_pct == pytest.approx(15.0)
    # 1 wrk error (the 503) + 3 failed state changes + 1 wrong answer + 1 restart + 2 log lines
    assert result.errors == 8 and not result.met
    header, rows = table(soak.render(result))
    assert tuple(header) == soak.COLUMNS
    (row,) = rows
    assert (row["wrk errors"], row["failed"], row["state changes"], row["expected 4xx"]) == (
        "1",
        "3",
        "12",
        "4",
    )
    assert cell(row, "errors") == "8 MISSED"
    assert cell(row, "RSS growth") == "15.0 MISSED"
    fine = _result(failures=0, growth_to=104.0)
    assert fine.memory.growth_pct == pytest.approx(4.0)
    (row,) = table(soak.render(fine))[1]
    assert cell(row, "RSS growth") == "4.0 met"
    assert cell(row, "errors") == "5 MISSED"  # the 503, the wrong answer, restart, log lines
