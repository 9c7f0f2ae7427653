"""The Workflow page: the matrix of one area, then review, then save (or refuse a stale form and
offer to replay its changes on the policy in force)."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from service import audit, matrix, policy_changes
from service.admin.blueprint import bp
from service.admin.context import admin, workflow
from service.admin.replay import replay
from service.admin.stored import Stored, area_or_404, load, phase_counts, read
from service.admin.tenants import tenant_for
from service.db import store
from service.errors import Conflict
from service.policies import policy_engine
from service.policy_rules import Finding
from service.workflows import Area, CellChange

INTEGER = re.compile(r"-?[0-9]{1,64}")


@bp.get("/workflow/<area_id>")
def workflow_page(area_id: str) -> ResponseReturnValue:
    """The matrix as stored now."""
    area = area_or_404(area_id)
    tenant = tenant_for(request.args.get("tenant"))
    if tenant is None:
        return redirect(url_for("admin.tenant_picker"))
    stored = load(tenant, area)
    return _form_page(tenant, area, stored, matrix.from_cells(area, stored.cells), stored.version)


@bp.post("/workflow/<area_id>")
def workflow_submit(area_id: str) -> ResponseReturnValue:
    """The form's steps: `review` the submitted matrix, go `back` to editing it, or `save` it."""
    area = area_or_404(area_id)
    tenant = tenant_for(request.form.get("tenant"))
    loaded_version = _version(request.form.get("version", ""))
    if tenant is None or loaded_version is None:
        abort(400, "The form lacks its tenant or policy version: reload the page.")
    stored = load(tenant, area)
    current = matrix.from_cells(area, stored.cells)
    draft, problems = matrix.from_form(workflow(), area, request.form, current)
    step = request.form.get("step", "review")
    if step == "back":
        return _form_page(tenant, area, stored, draft, loaded_version)
    problems += matrix.validate(workflow(), area, draft)
    if problems:
        return _form_page(tenant, area, stored, draft, loaded_version, problems), 400
    if step == "save":  # a stale one is refused by the write itself, and logged as refused
        return _save(tenant, area, draft, loaded_version)
    if loaded_version != stored.version:
        return _stale_page(tenant, area, loaded_version)
    return _review_page(tenant, area, stored, draft)


def _version(given: str) -> int | None:
    """The policy version a form was loaded at: an integer in ASCII digits (int() would take
    `١` too), else None. Any size: it is only compared with the stored one, never queried
    (a stale page reads the audit trail for versions between 0 and the stored one only)."""
    return int(given) if INTEGER.fullmatch(given) else None


def _form_page(
    tenant: str,
    area: Area,
    stored: Stored,
    shown: matrix.AreaMatrix,
    loaded_version: int,
    problems: list[Finding] | None = None,
    **extra: Any,
) -> str:
    """The Workflow page showing `shown` (stored or draft) for the version it was loaded at."""
    message = partial(matrix.message, workflow())
    rows = [
        {
            "phase": phase,
            "row": shown.row(phase.id),
            "problems": [message(p) for p in problems or [] if p.phase == phase.id],
        }
        for phase in area.phases
    ]
    return render_template(
        "admin/workflow.html",
        tenant=tenant,
        area=area,
        stored=stored,
        rows=rows,
        columns=matrix.columns(workflow()),
        loaded_version=loaded_version,
        problems=problems or [],
        message=message,
        describe=partial(matrix.describe, workflow()),
        **extra,
    )


def _review_page(
    tenant: str, area: Area, stored: Stored, draft: matrix.AreaMatrix
) -> ResponseReturnValue:
    """Each changed cell in plain words, and the assessments it affects, before saving."""
    found = _changes(stored, draft)
    if not found:
        flash("Nothing to review: the form matches the saved settings.")
        return _form_page(tenant, area, stored, draft, stored.version)
    return render_template(
        "admin/review.html",
        tenant=tenant,
        area=area,
        stored=stored,
        changes=found,
        describe=partial(matrix.describe, workflow()),
        impacts=matrix.impacts(workflow(), area, found, phase_counts(tenant, area)),
        fields=matrix.form_fields(workflow(), draft),
    )


def _save(
    tenant: str, area: Area, draft: matrix.AreaMatrix, loaded_version: int
) -> ResponseReturnValue:
    """Replace the area's rows, bump the version and audit each cell, in one transaction; a
    version that moved since the form was loaded refuses the whole save."""
    try:
        result = policy_changes.commit(
            store(),
            policy_engine(),
            tenant,
            matrix.to_cells(draft),
            actor=admin().username,
            area=area.id,
            expected_version=loaded_version,
        )
    except Conflict:
        return _stale_page(tenant, area, loaded_version)
    count = len(result.changes)
    if count:
        flash(
            f"Saved {count} change{'s' * (count != 1)}: the policy is now version {result.version}."
        )
    else:
        flash("Nothing changed: the form matched the saved settings.")
    return redirect(url_for("admin.workflow_page", area_id=area.id, tenant=tenant), 303)


def _stale_page(tenant: str, area: Area, loaded_version: int) -> ResponseReturnValue:
    """Refuse a form loaded before someone else's save (409, nothing saved) and show the settings
    in force, the admin's own changes against the version the form was loaded at, what others
    changed since and an offer to apply the former on top. When the audit trail cannot rebuild
    that version, say why and list the form's differences from the settings in force, as such."""
    with store().read() as conn:
        stored = read(conn, tenant, area)
        known = 0 < loaded_version < stored.version  # nothing to read for any other number
        edits = audit.policy_edits_after(conn, tenant, loaded_version) if known else []
    now = matrix.from_cells(area, stored.cells)
    page = partial(_form_page, tenant, area, stored, now, stored.version, stale_from=loaded_version)
    try:
        loaded = audit.policy_at(stored.cells, stored.version, edits, loaded_version, area.id)
    except audit.HistoryGap as gap:
        draft, _ = matrix.from_form(workflow(), area, request.form, now)
        return page(gap=str(gap), pending=_changes(stored, draft)), 409
    draft, _ = matrix.from_form(workflow(), area, request.form, matrix.from_cells(area, loaded))
    found = replay(workflow(), area, loaded, matrix.to_cells(draft), frozenset(stored.cells), edits)
    fields = matrix.form_fields(workflow(), matrix.from_cells(area, found.merged))
    return page(replay=found, fields=fields), 409


def _changes(stored: Stored, draft: matrix.AreaMatrix) -> tuple[CellChange, ...]:
    """The cells saving the draft would change, in display order."""
    return workflow().changes(frozenset(stored.cells), matrix.to_cells(draft))
