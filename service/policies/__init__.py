"""The one seam around casbin: the model (model.py), each tenant's rows and versions in the store
(store.py), and deciding with them (engine.py). Nothing outside this package imports casbin or
casbin-sqlalchemy-adapter.

casbin parses model.conf; the rows live in casbin-sqlalchemy-adapter's `casbin_rule` table, and a
process reads one tenant's rows (by the tenant-leading index) when it first decides for it.
"""

from __future__ import annotations

from flask import Flask, current_app

from service import db
from service.policies.engine import (
    Decision,
    PolicyEngine,
    TenantPolicy,
    decide,
    load_tenant,
    validate,
)
from service.policies.model import ModelError, load_model

__all__ = [
    "Decision",
    "ModelError",
    "PolicyEngine",
    "TenantPolicy",
    "decide",
    "init_app",
    "load_model",
    "load_tenant",
    "policy_engine",
    "validate",
]

_EXTENSION = "workflow_authz.policies"


def init_app(app: Flask) -> None:
    """Build the process's policy engine over the app's store (db.init_app runs first)."""
    with app.app_context():
        app.extensions[_EXTENSION] = PolicyEngine.from_settings(db.store(), app.config)


def policy_engine() -> PolicyEngine:
    """The current app's policy engine, shared by every request of the process."""
    engine: PolicyEngine = current_app.extensions[_EXTENSION]
    return engine
