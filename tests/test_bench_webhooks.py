"""bench/webhooks.py in its quick mode: a real `deliver` process, both modes, one table, every
event received and verified."""

from __future__ import annotations

import pytest

from bench import webhooks
from tests.bench_tables import table


def test_quick_run_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert webhooks.main(["--quick", "--backend", "sqlite"]) == 0
    header, rows = table(capsys.readouterr().out)
    assert tuple(header) == webhooks.COLUMNS
    assert [(r["backend"], r["mode"]) for r in rows] == [("sqlite", "paced"), ("sqlite", "burst")]
    for row in rows:
        assert row["events"] == row["received"] == "30"
        assert row["bad signatures"] == "0"
        assert float(row["lag p50 ms"]) <= float(row["lag p99 ms"]) <= float(row["lag max ms"])


def test_order_and_duplicates_are_judged_per_arrival() -> None:
    assert webhooks.order_kept(["evt_t_3", "evt_t_4", "evt_t_4", "evt_t_5"])
    assert not webhooks.order_kept(["evt_t_3", "evt_t_5", "evt_t_4"])
    assert not webhooks.order_kept(["evt_t_3", "evt_t_4", "evt_t_3"])
    assert webhooks.duplicates(["evt_t_3", "evt_t_4", "evt_t_4", "evt_t_4"]) == 2
