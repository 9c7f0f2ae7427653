"""A stale form replayed on the policy in force (pure): the admin's own changes, measured against
the version the form was loaded at; what others changed since, from the audit trail; where the two
meet; and the area's cells with the admin's changes on top of the ones in force now."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service import matrix
from service.audit import PolicyEdit
from service.workflows import Area, Cell, CellChange, Workflow


@dataclass(frozen=True)
class Overlap:
    """A change of yours on a cell someone else changed meanwhile, with their latest edit of it
    (None only when the trail lacks it, which `audit.policy_at` refuses to rebuild from)."""

    change: CellChange
    their_last: PolicyEdit | None


@dataclass(frozen=True)
class Replay:
    """The stale page's content: `yours` against the loaded version, `theirs` (this area's audited
    edits since, oldest first) and how many edits `elsewhere`; of yours, those `already` in force
    (they made the same change) and those `to_apply`, among them those `overridden` (reversing
    their latest edit of the cell, or their choice in the same select). `merged` is the area's
    cells in force with `to_apply` on top, a choice of yours replacing theirs (the review it goes
    through checks its rules, as for any form)."""

    yours: tuple[CellChange, ...]
    theirs: tuple[PolicyEdit, ...]
    elsewhere: int
    already: tuple[Overlap, ...]
    overridden: tuple[Overlap, ...]
    to_apply: tuple[CellChange, ...]
    merged: frozenset[Cell]


def replay(
    workflow: Workflow,
    area: Area,
    loaded: frozenset[Cell],
    draft: frozenset[Cell],
    now: frozenset[Cell],
    edits: Sequence[PolicyEdit],
) -> Replay:
    """Your changes (`loaded` -> `draft`) replayed on the area's cells in force `now`; `edits` are
    the tenant's audited edits since the loaded version, of every area, oldest first."""
    yours = workflow.changes(loaded, draft)
    theirs = tuple(e for e in edits if e.change.cell[1] == area.id)
    last = {e.change.cell: e for e in theirs}  # oldest first: each cell's latest edit wins
    to_apply = tuple(c for c in yours if (c.cell in now) != c.after)
    removed = {c.cell for c in to_apply if not c.after}
    displaced = _displaced(workflow, to_apply, now - removed)
    merged = frozenset((now - removed - set(displaced)) | {c.cell for c in to_apply if c.after})
    return Replay(
        yours=yours,
        theirs=theirs,
        elsewhere=len(edits) - len(theirs),
        already=tuple(Overlap(c, last.get(c.cell)) for c in yours if c not in to_apply),
        overridden=_overridden(to_apply, displaced, last),
        to_apply=to_apply,
        merged=merged,
    )


def _displaced(
    workflow: Workflow, to_apply: Sequence[CellChange], kept: frozenset[Cell]
) -> dict[Cell, CellChange]:
    """Cells in force that a choice of yours replaces, each with that choice: the holder of an
    action the page gives one role per phase (the responsible select) where yours picks another."""
    one_role = {c.action for c in matrix.columns(workflow) if c.select}
    return {
        held: change
        for change in to_apply
        if change.after and change.cell[3] in one_role
        for held in kept
        if held[1:] == change.cell[1:] and held[0] != change.cell[0]
    }


def _overridden(
    to_apply: Sequence[CellChange],
    displaced: dict[Cell, CellChange],
    last: dict[Cell, PolicyEdit],
) -> tuple[Overlap, ...]:
    """Changes of yours that reverse someone's latest edit meanwhile: on a cell they changed and
    set back as you loaded it, or a choice of theirs in the same select (two roles chosen)."""
    found = []
    for change in to_apply:
        cells = [change.cell, *(held for held, by in displaced.items() if by == change)]
        found += [Overlap(change, last[cell]) for cell in cells if cell in last]
    return tuple(found)
