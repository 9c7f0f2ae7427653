"""What an admin request works with: the store, the policy engine, the workflow, the admin."""

from __future__ import annotations

from dataclasses import dataclass

from flask import g

from service.policies import policy_engine
from service.workflows import Workflow


@dataclass(frozen=True)
class SignedIn:
    """The admin of this request; `tenant` None means it may manage every tenant."""

    id: int
    username: str
    tenant: str | None


def workflow() -> Workflow:
    """Areas, phases and roles, as policy/workflow.toml defines them."""
    return policy_engine().workflow


def admin() -> SignedIn:
    """The admin the login guard signed in for this request."""
    signed_in: SignedIn = g.admin
    return signed_in
