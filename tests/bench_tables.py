"""Reading the tables the benchmarks print, so their tests can check shape (never timings)."""

from __future__ import annotations


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
