"""The canonical text of a tenant's policy, and the cell changes between two policies.

`export` writes this text and `import` and `diff` print these changes. Rows are sorted in the
definition's display order (area, phase, role, action, each as workflow.toml lists them), so a
file reads like the admin matrix and stays byte-identical while the policy does; an id the
definition does not know sorts after the known ones, lexically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from service.checker.rows import row_text
from service.workflows import Cell, Workflow

OrderKey = tuple[int, int, int, int, Cell]


@dataclass(frozen=True)
class Change:
    """One cell a file allows that the live policy does not (added), or the reverse."""

    cell: Cell
    added: bool

    def line(self, tenant: str) -> str:
        """`+ row` when the cell becomes allowed, `- row` when it stops being allowed."""
        return f"{'+' if self.added else '-'} {row_text((tenant, *self.cell))}"


def display_order(workflow: Workflow) -> Callable[[Cell], OrderKey]:
    """A sort key: area, phase, role and action in the definition's order, then the ids."""
    areas = {a.id: i for i, a in enumerate(workflow.areas)}
    phases = {(a.id, p.id): i for a in workflow.areas for i, p in enumerate(a.phases)}
    roles = {r.id: i for i, r in enumerate(workflow.roles)}
    actions = {a: i for i, a in enumerate(workflow.actions)}

    def key(cell: Cell) -> OrderKey:
        role, area, phase, action = cell
        unknown = len(workflow.roles) + len(workflow.areas) + len(workflow.actions) + 1
        return (
            areas.get(area, unknown),
            phases.get((area, phase), unknown),
            roles.get(role, unknown),
            actions.get(action, unknown),
            cell,
        )

    return key


def policy_text(tenant: str, version: int, cells: Iterable[Cell], workflow: Workflow) -> str:
    """A tenant's policy as a casbin CSV: a two-line header, then one canonical row per cell."""
    header = [
        f"# Policy of tenant {tenant} at version {version}, written by workflow-authz export.",
        "# One row per allowed cell, in workflow.toml's order of area, phase, role and action.",
    ]
    rows = [row_text((tenant, *cell)) for cell in sorted(set(cells), key=display_order(workflow))]
    return "\n".join([*header, *rows]) + "\n"


def cell_changes(live: Iterable[Cell], wanted: Iterable[Cell], workflow: Workflow) -> list[Change]:
    """The cells to add and to remove to turn `live` into `wanted`, in display order."""
    before, after = set(live), set(wanted)
    changed = sorted(before ^ after, key=display_order(workflow))
    return [Change(cell, cell in after) for cell in changed]
