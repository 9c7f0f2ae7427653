"""The decision log: every decision gets an id and one structured JSON line, so an auditor can
answer "who could see what, when, and why". Never a key or a password: the key's name only."""

from __future__ import annotations

import json
import logging
import os

from service.keys import Key
from service.models import iso, utcnow
from service.policies import Decision

log = logging.getLogger("workflow_authz.decisions")


def record(decision: Decision, assessment: str | None, key: Key) -> str:
    """Log one decision (less its prose reason) as a JSON line and return its new decision id."""
    decision_id = os.urandom(16).hex()  # 128 random bits, as a uuid4's hex; a fifth of its cost
    if log.isEnabledFor(logging.INFO):
        line = {
            "event": "decision",
            "decision_id": decision_id,
            "at": iso(utcnow()),
            "allowed": decision.allowed,
            "tenant": decision.tenant,
            "role": decision.role,
            "action": decision.action,
            "area": decision.area,
            "phase": decision.phase,
            "assessment": assessment,
            "policy_version": decision.policy_version,
            "rule": list(decision.rule) if decision.rule else None,
            "key": key.name,
        }
        log.info(json.dumps(line, separators=(",", ":")))
    return decision_id
