"""The one table each benchmark prints: Markdown, right-aligned, then its legend; verdicts."""

from __future__ import annotations

from collections.abc import Sequence


def columns(header: str) -> tuple[str, ...]:
    """The column names of a Markdown header row, "| a | b |" -> ("a", "b")."""
    return tuple(name.strip() for name in header.strip().strip("|").split("|"))


def render(columns: Sequence[str], rows: Sequence[Sequence[str]], legend: Sequence[str]) -> str:
    """A Markdown table of `rows` under `columns`, a blank line, then the legend's lines."""
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    lines = [_line(columns, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [_line(row, widths) for row in rows]
    return "\n".join([*lines, "", *legend])


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |"


def met(ok: bool) -> str:
    """'met' or 'MISSED'."""
    return "met" if ok else "MISSED"


def at_least(value: float, target: float, digits: int = 2) -> str:
    """The figure and whether it reaches its target."""
    return f"{value:.{digits}f} {met(value >= target)}"


def at_most(value: float, limit: float, digits: int = 2) -> str:
    """The figure and whether it stays within its limit."""
    return f"{value:.{digits}f} {met(value <= limit)}"
