"""What an admin request works with: the store, the policy engine, the workflow, the admin."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g

from service.db import Database
from service.policies import PolicyEngine
from service.workflows import Workflow


@dataclass(frozen=True)
class SignedIn:
    """The admin of this request; `tenant` None means it may manage every tenant."""

    id: int
    username: str
    tenant: str | None


def db() -> Database:
    """The store this app was built with."""
    database: Database = current_app.extensions["workflow_authz.db"]
    return database


def engine() -> PolicyEngine:
    """The policy engine: the only writer of policy rows."""
    policies: PolicyEngine = current_app.extensions["workflow_authz.policies"]
    return policies


def workflow() -> Workflow:
    """Areas, phases and roles, as policy/workflow.toml defines them."""
    return engine().workflow


def admin() -> SignedIn:
    """The admin the login guard signed in for this request."""
    signed_in: SignedIn = g.admin
    return signed_in
