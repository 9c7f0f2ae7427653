"""Reading the tables the benchmarks print, so their tests can check shape (never timings)."""

from __future__ import annotations

import pytest

from bench import wrk
from tests.conftest import IN_CI


def require_wrk() -> None:
    """Skip without Debian's wrk, except in CI, where its absence fails the test."""
    if wrk.available():
        return
    if IN_CI:
        pytest.fail(f"CI=true but {wrk.WRK} is missing: the test set-up installs Debian's wrk")
    pytest.skip(f"{wrk.WRK} is not installed (apt-get install wrk); CI=true requires it")


def table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header of the first Markdown table in `text`, and its rows by column name."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) >= 3, text
    header, separator, *body = (
        [cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines
    )
    assert all(set(cell) == {"-"} for cell in separator), separator
    assert all(len(row) == len(header) for row in body), lines
    return header, [dict(zip(header, row, strict=True)) for row in body]


def cell(row: dict[str, str], prefix: str) -> str:
    """The value of the one column whose name starts with `prefix`."""
    (value,) = [value for name, value in row.items() if name.startswith(prefix)]
    return value


def verdict(value: str) -> bool:
    """True when a target cell holds a figure followed by 'met' or 'MISSED'."""
    figure, _, word = value.partition(" ")
    float(figure)
    return word in {"met", "MISSED"}
