"""The External systems page: the tenant's webhook endpoints with the facts `workflow-authz
webhooks list` shows (state, last delivery, backlog), for the admin's tenant only.

Read-only: endpoints are added, rotated and removed with the CLI by the service's operator,
because an endpoint is where the service itself connects to (WEBHOOK_ALLOW_PRIVATE is the
operator's decision), and a signing secret shown once belongs in a terminal, not in a page a
browser may keep in its history.
"""

from __future__ import annotations

from flask import abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from service.admin.blueprint import bp
from service.admin.tenants import tenant_for
from service.db import store
from service.policies.store import current_version
from service.webhooks import endpoints


@bp.get("/external-systems")
def external_systems() -> ResponseReturnValue:
    """The tenant's endpoints, oldest first, never their secrets."""
    tenant = tenant_for(request.args.get("tenant"))
    if tenant is None:
        return redirect(url_for("admin.tenant_picker"))
    with store().read() as conn:
        if current_version(conn, tenant) is None:
            abort(404, f"There is no tenant {tenant!r}.")
        listed = endpoints.listing(conn, tenant)
    return render_template("admin/external.html", tenant=tenant, endpoints=listed, area=None)
