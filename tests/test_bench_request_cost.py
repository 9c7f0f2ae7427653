"""bench/request_cost.py in its quick mode on SQLite: a complete table, every answer of the
warm-up pass checked against the generated policy, and no temporary store left behind. Timings
are printed, never asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.internals import REPO_ROOT
from bench.request_cost import COLUMNS
from tests.bench_tables import table


def test_quick_run_checks_every_answer_and_cleans_up(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.request_cost", "--backend", "sqlite", "--quick"],
        cwd=REPO_ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    header, rows = table(done.stdout)
    assert tuple(header) == COLUMNS
    assert [(r["endpoint"], r["backend"]) for r in rows] == [
        ("constant", "—"),
        ("authorize", "sqlite"),
        ("batch ×100", "sqlite"),
    ]
    for row in rows:
        assert float(row["µs/request"].replace(",", "")) > 0
        checked, of = row["answers checked"].split("/")
        assert checked == of and int(of) > 0
    assert list(tmp_path.iterdir()) == []
