"""The audit page: policy changes and workflow transitions of a tenant, newest first, filtered by
area and by person, paginated."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import Connection, Select, String, and_, cast, literal, null, select, union_all

from service import matrix
from service.admin.blueprint import bp
from service.admin.context import workflow
from service.admin.tenants import tenant_for
from service.db import store
from service.models import Assessment, PolicyChange, Transition
from service.policies.store import current_version
from service.workflows import Area

PAGE_SIZE = 50


@bp.get("/audit")
def audit() -> ResponseReturnValue:
    """Policy changes and workflow transitions of the tenant, newest first, filtered, paged."""
    tenant = tenant_for(request.args.get("tenant"))
    if tenant is None:
        return redirect(url_for("admin.tenant_picker"))
    area = request.args.get("area", "")
    area = area if area in workflow().area_by_id else ""
    person = request.args.get("person", "").strip()
    page = max(1, request.args.get("page", 1, type=int) or 1)
    with store().read() as conn:
        if current_version(conn, tenant) is None:
            abort(404, f"There is no tenant {tenant!r}.")
        entries = _entries(conn, tenant, area or None, person or None, page)
    return render_template(
        "admin/audit.html",
        tenant=tenant,
        entries=[_line(e) for e in entries[:PAGE_SIZE]],
        area=area,
        person=person,
        page=page,
        more=len(entries) > PAGE_SIZE,
    )


def _entries(
    conn: Connection, tenant: str, area: str | None, person: str | None, page: int
) -> list[Any]:
    """One page (plus one row, to know if there is more) of both logs merged by time."""
    merged = union_all(
        _policy_log(tenant, area, person), _transition_log(tenant, area, person)
    ).subquery()
    query = (
        select(merged)
        .order_by(merged.c.at.desc(), merged.c.kind, merged.c.id.desc())
        .limit(PAGE_SIZE + 1)
        .offset((page - 1) * PAGE_SIZE)
    )
    return list(conn.execute(query))


def _policy_log(tenant: str, area: str | None, person: str | None) -> Select[*tuple[Any, ...]]:
    """Changed cells, in the columns both logs share."""
    query = select(
        literal("policy").label("kind"),
        PolicyChange.id,
        PolicyChange.at,
        PolicyChange.actor,
        PolicyChange.area,
        PolicyChange.phase,
        cast(null(), String).label("to_phase"),
        PolicyChange.role,
        PolicyChange.action,
        PolicyChange.after,
        PolicyChange.version,
        cast(null(), String).label("assessment_id"),
        cast(null(), String).label("reason"),
    ).where(PolicyChange.tenant == tenant)
    if area:
        query = query.where(PolicyChange.area == area)
    if person:
        query = query.where(PolicyChange.actor == person)
    return query


def _transition_log(tenant: str, area: str | None, person: str | None) -> Select[*tuple[Any, ...]]:
    """Phase changes of assessments (their area read from the assessment), same columns."""
    query = (
        select(
            literal("transition").label("kind"),
            Transition.id,
            Transition.at,
            Transition.actor,
            Assessment.area,
            Transition.from_phase.label("phase"),
            Transition.to_phase,
            Transition.role,
            Transition.action,
            literal(True).label("after"),
            Transition.policy_version.label("version"),
            Transition.assessment_id,
            Transition.reason,
        )
        .join(
            Assessment,
            and_(Assessment.tenant == Transition.tenant, Assessment.id == Transition.assessment_id),
        )
        .where(Transition.tenant == tenant)
    )
    if area:
        query = query.where(Assessment.area == area)
    if person:
        query = query.where(Transition.actor == person)
    return query


def _line(entry: Any) -> dict[str, Any]:
    """An audit row for the template: when, who, what happened in plain words, which version."""
    if entry.kind == "policy":
        cell = (entry.role, entry.area, entry.phase, entry.action)
        what = matrix.describe(workflow(), cell, bool(entry.after), tense="past")
    else:
        what = _transition_words(entry)
    return {
        "kind": entry.kind,
        "at": entry.at,
        "actor": entry.actor,
        "what": what,
        "version": entry.version,
    }


def _transition_words(entry: Any) -> str:
    """'Advanced Behaviour assessment b1 from A to B as Mentor'; a reopen says 'back to' and why."""
    area = workflow().area_by_id.get(entry.area)
    role = workflow().role(entry.role)
    verb, to = ("Reopened", "back to") if entry.action == matrix.REOPEN else ("Advanced", "to")
    words = (
        f"{verb} {area.label if area else entry.area} assessment {entry.assessment_id} "
        f"from {_phase_label(area, entry.phase)} {to} {_phase_label(area, entry.to_phase)} "
        f"as {role.label if role else entry.role}"
    )
    return f"{words}, giving the reason “{entry.reason}”" if entry.reason else words


def _phase_label(area: Area | None, phase_id: str) -> str:
    """A phase's label, or its id when the definition no longer has it."""
    phase = area.phase(phase_id) if area else None
    return phase.label if phase else phase_id
