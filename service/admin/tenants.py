"""Which tenant a page is about: a tenant admin's own; an all-tenant admin's pick."""

from __future__ import annotations

from flask import abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from service.admin.blueprint import bp
from service.admin.context import admin, workflow
from service.db import store
from service.policies.store import tenants
from service.workflows import is_identifier


@bp.get("/")
def index() -> ResponseReturnValue:
    """The first area's Workflow page (of the tenant asked for, or the only one there is)."""
    area = workflow().areas[0]
    tenant = tenant_for(request.args.get("tenant"))  # url_for leaves out None
    return redirect(url_for("admin.workflow_page", area_id=area.id, tenant=tenant))


@bp.get("/tenants")
def tenant_picker() -> ResponseReturnValue:
    """All-tenant admins pick the tenant to manage (straight through when there is only one)."""
    signed_in = admin()
    if signed_in.tenant is not None:
        return redirect(url_for("admin.index", tenant=signed_in.tenant))
    with store().read() as conn:
        names = tenants(conn)
    if len(names) == 1:
        return redirect(url_for("admin.index", tenant=names[0]))
    return render_template("admin/tenants.html", tenants=names, tenant=None)


def tenant_for(requested: str | None) -> str | None:
    """The tenant a page is about: a tenant admin's own (403 for any other); for an all-tenant
    admin the one asked for, the only tenant there is, or None: the admin has to pick one."""
    signed_in = admin()
    if signed_in.tenant is not None:
        if requested and requested != signed_in.tenant:
            abort(403, f"You manage tenant {signed_in.tenant!r} only.")
        return signed_in.tenant
    if requested:
        if not is_identifier(requested):  # never a tenant's name: nothing to ask the store
            abort(404, f"There is no tenant {requested!r}.")
        return requested
    with store().read() as conn:
        names = tenants(conn)
    return names[0] if len(names) == 1 else None
