"""The canonical text of a tenant's policy, and the line a changed cell prints as.

`export` writes this text and `import` and `diff` print these lines. Rows are sorted in the
definition's display order (Workflow.display_order: area, phase, role, action, each as
workflow.toml lists them), so a file reads like the admin matrix and stays byte-identical while
the policy does.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.checker.rows import row_text
from service.workflows import Cell, CellChange, Workflow


def policy_text(tenant: str, version: int, cells: Iterable[Cell], workflow: Workflow) -> str:
    """A tenant's policy as a casbin CSV: a two-line header, then one canonical row per cell."""
    header = [
        f"# Policy of tenant {tenant} at version {version}, written by workflow-authz export.",
        "# One row per allowed cell, in workflow.toml's order of area, phase, role and action.",
    ]
    rows = [row_text((tenant, *cell)) for cell in sorted(set(cells), key=workflow.display_order)]
    return "\n".join([*header, *rows]) + "\n"


def change_line(tenant: str, change: CellChange) -> str:
    """`+ row` when the cell becomes allowed, `- row` when it stops being allowed."""
    return f"{'+' if change.after else '-'} {row_text((tenant, *change.cell))}"
