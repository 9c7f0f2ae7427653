"""The default policy's expected decision for every matrix cell, read from policy/cases.csv."""

from __future__ import annotations

import csv
from pathlib import Path

CASES = Path(__file__).resolve().parent.parent / "policy" / "cases.csv"


def default_matrix() -> list[tuple[str, str, str, str, bool]]:
    """(role, area, phase, action, allowed) for all 108 cells of tenant `default`."""
    lines = [line for line in CASES.read_text().splitlines() if line and not line.startswith("#")]
    return [
        (r["role"], r["area"], r["phase"], r["action"], r["expect"] == "allow")
        for r in csv.DictReader(lines)
    ]


MATRIX = default_matrix()
CELL_IDS = [f"{role}-{action}-{area}-{phase}" for role, area, phase, action, _ in MATRIX]
