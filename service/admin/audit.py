"""The audit page: policy changes and workflow transitions of a tenant, newest first, filtered by
area and by person, paginated."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup

from service import matrix
from service.admin.blueprint import bp, inert
from service.admin.context import workflow
from service.admin.tenants import tenant_for
from service.audit import Entry, history
from service.db import store
from service.limits import MAX_OFFSET, storable, whole_number
from service.policies.store import current_version
from service.workflows import REOPEN, Area

PAGE_SIZE = 50
LAST_PAGE = MAX_OFFSET // PAGE_SIZE
"""The largest page number whose offset a store's integer holds."""


@bp.get("/audit")
def audit() -> ResponseReturnValue:
    """Policy changes and workflow transitions of the tenant, newest first, filtered, paged."""
    tenant = tenant_for(request.args.get("tenant"))
    if tenant is None:
        return redirect(url_for("admin.tenant_picker"))
    area = request.args.get("area", "")
    area = area if area in workflow().area_by_id else ""
    person = request.args.get("person", "").strip()
    if not storable(person):
        abort(400, "The person filter holds a character no name can hold (U+0000).")
    page = _page_number(request.args.get("page", "1"))
    with store().read() as conn:
        if current_version(conn, tenant) is None:
            abort(404, f"There is no tenant {tenant!r}.")
        entries = history(
            conn,
            tenant,
            area=area or None,
            person=person or None,
            limit=PAGE_SIZE + 1,  # one more, to know whether there is an older page
            offset=(page - 1) * PAGE_SIZE,
        )
    return render_template(
        "admin/audit.html",
        tenant=tenant,
        entries=[_line(e) for e in entries[:PAGE_SIZE]],
        area=area,
        person=person,
        page=page,
        more=len(entries) > PAGE_SIZE,
    )


def _page_number(given: str) -> int:
    """The page asked for: a number in ASCII digits from 1 to LAST_PAGE (400 otherwise); an
    empty one is the first."""
    page = whole_number(given or "1", LAST_PAGE)
    if not page:
        abort(400, f"The page number must be a whole number from 1 to {LAST_PAGE}.")
    return page


def _line(entry: Entry) -> dict[str, Any]:
    """An audit row for the template: when, who (and for a transition the API key that made it),
    what happened in plain words, which version."""
    if entry.kind == "policy":
        cell = (entry.role, entry.area, entry.phase, entry.action)
        what = matrix.describe(workflow(), cell, bool(entry.after), tense="past")
    else:
        what = _transition_words(entry)
    return {
        "kind": entry.kind,
        "at": entry.at,
        "actor": entry.actor,
        "key": entry.key_name,
        "key_prefix": entry.key_prefix,
        "what": what,
        "version": entry.version,
    }


def _transition_words(entry: Entry) -> str | Markup:
    """'Advanced Behaviour b1 from A to B as Mentor' (the area's label names what b1 is: 'Assessment
    assessment a1' doubled a word); a reopen says 'back to' and why, the reason made inert."""
    area = workflow().area_by_id.get(entry.area)
    role = workflow().role(entry.role)
    verb, to = ("Reopened", "back to") if entry.action == REOPEN else ("Advanced", "to")
    words = (
        f"{verb} {area.label if area else entry.area} {entry.assessment_id} "
        f"from {_phase_label(area, entry.phase)} {to} {_phase_label(area, entry.to_phase or '')} "
        f"as {role.label if role else entry.role}"
    )
    if not entry.reason:
        return words
    return Markup("%s, giving the reason “%s”") % (words, inert(entry.reason))


def _phase_label(area: Area | None, phase_id: str) -> str:
    """A phase's label, or its id when the definition no longer has it."""
    phase = area.phase(phase_id) if area else None
    return phase.label if phase else phase_id
