"""bench/decisions.py in its quick mode on SQLite (1 and 20 tenants): a complete table, the
service's answers equal casbin's on every sampled request, and no temporary store left behind.
Timings are printed, never asserted."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import decisions
from bench.internals import REPO_ROOT
from tests.bench_tables import cell, table, verdict

QUICK = ["--backend", "sqlite", "--tenants", "1,20", "--quick"]
ENTRY_POINTS = {"bench.decisions": QUICK}
"""Each entry point and the arguments of its tiny quick run."""


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[decisions.Result]]:
    """One in-process quick run, with temporary stores made under a folder of our own."""
    folder = tmp_path_factory.mktemp("bench_tmp")
    saved, tempfile.tempdir = tempfile.tempdir, str(folder)
    try:
        yield decisions.run(decisions.parse_args(QUICK))
    finally:
        tempfile.tempdir = saved
    assert list(folder.iterdir()) == []  # every temporary store was removed


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_entry_point_runs_quick_and_cleans_up(module: str, tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", module, *ENTRY_POINTS[module]],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    header, rows = table(done.stdout)
    assert header and rows
    assert list(tmp_path.iterdir()) == []


def test_table_has_every_row_and_column(quick_results: list[decisions.Result]) -> None:
    header, rows = table(decisions.render(quick_results, decisions.parse_args(QUICK)))
    assert tuple(header) == decisions.COLUMNS
    assert [(r["tenants"], r["backend"]) for r in rows] == [("1", "sqlite"), ("20", "sqlite")]
    for row in rows:
        assert all(row.values())
        for column in ("a-all µs", "a µs", "b µs", "b-miss µs", "c µs", "d µs"):
            assert float(row[column].replace(",", "")) > 0
        assert verdict(cell(row, "a/b")) and verdict(cell(row, "a/c"))
        assert row["answers checked"].endswith("all agree")
    assert cell(rows[0], "b(N)") == cell(rows[0], "c(N)") == "—"
    assert verdict(cell(rows[1], "b(N)")) and verdict(cell(rows[1], "c(N)"))


def test_rows_in_store_are_30_to_60_per_tenant(quick_results: list[decisions.Result]) -> None:
    for result in quick_results:
        assert 30 * result.tenants <= result.rows <= 60 * result.tenants


def test_engine_answers_equal_casbin_on_the_sampled_requests(
    quick_results: list[decisions.Result],
) -> None:
    for result in quick_results:
        answers = result.answers
        assert answers["b"] == answers["a"] == answers["d"] == answers["expected-requests"]
        assert True in answers["b"] and False in answers["b"]  # allows and denies both sampled
        assert answers["a-all"] == answers["a"][: len(answers["a-all"])]
        assert answers["c"] == answers["expected-questions"]
        assert answers["b-miss"] == answers["expected-misses"]
        assert result.disagreements == ()


def test_a_wrong_answer_is_reported() -> None:
    answers: dict[str, tuple[bool, ...]] = {
        name: (True, False) for name in ("a", "a-all", "b", "d", "expected-requests")
    }
    answers |= {name: (True,) for name in ("b-miss", "c", "expected-misses", "expected-questions")}
    assert decisions.disagreements(answers) == ()
    answers["b"] = (True, True)
    assert decisions.disagreements(answers) == ("b: 1/2 differ",)
