"""The sysadmin's web form at /admin: login, the Workflow page with its review step, the audit log.

HTML for people, never JSON: errors on these pages render as pages. Every POST carries a CSRF
token; every answer forbids framing, scripts and caching. Views are thin: the matrix rules live in
service/matrix.py and every policy write goes through policy_changes.save in one transaction.

One module per concept: `blueprint` (the blueprint and what every page shares), `context` (the
request's store, engine and admin), `sessions` (cookie, signing key, headers), `login`, `errors`,
`tenants`, `workflow` with `stored` and `replay` (a stale form's changes on the policy in force),
`external` (the External systems page: the tenant's webhook endpoints) and `audit`. Tables
are reached only through the domain modules that own them: service.accounts (admins and their
lockout), service.policies.store, service.assessments, service.audit and
service.webhooks.endpoints.
"""

from __future__ import annotations

from flask import Flask

# The view modules are imported for their routes, which they add to `bp`.
from service.admin import audit, errors, external, login, tenants, workflow  # noqa: F401
from service.admin.blueprint import bp, csrf
from service.admin.sessions import SESSION_LIFETIME, SecureOverHttpsSessions, secret_key

__all__ = ["SESSION_LIFETIME", "bp", "init_app", "secret_key"]


def init_app(app: Flask) -> None:
    """CSRF for the admin forms only (the API authenticates by key), then the blueprint."""
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.config["WTF_CSRF_TIME_LIMIT"] = None  # the token lives as long as the session
    app.session_interface = SecureOverHttpsSessions()
    csrf.init_app(app)
    app.register_blueprint(bp)
