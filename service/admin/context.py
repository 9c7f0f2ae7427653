"""What an admin request works with: the store, the policy engine, the workflow, the admin."""

from __future__ import annotations

from flask import g

from service.accounts import Account
from service.policies import policy_engine
from service.workflows import Workflow


def workflow() -> Workflow:
    """Areas, phases and roles, as policy/workflow.toml defines them."""
    return policy_engine().workflow


def admin() -> Account:
    """The admin the login guard signed in for this request."""
    signed_in: Account = g.admin
    return signed_in
