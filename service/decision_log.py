"""The decision log: every decision gets an id and one structured JSON line, so an auditor can
answer "who could see what, when, and why". Never a key or a password: the key's name only."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime

from service.keys import Key
from service.policies import Decision

log = logging.getLogger("workflow_authz.decisions")


def record(decision: Decision, assessment: str | None, key: Key) -> str:
    """Log one decision as a JSON line and return its id (also sent to the caller)."""
    decision_id = uuid.uuid4().hex
    if log.isEnabledFor(logging.INFO):
        log.info(
            json.dumps(
                {
                    "event": "decision",
                    "decision_id": decision_id,
                    "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                    "tenant": decision.tenant,
                    "role": decision.role,
                    "action": decision.action,
                    "area": decision.area,
                    "phase": decision.phase,
                    "assessment": assessment,
                    "allowed": decision.allowed,
                    "rule": list(decision.rule) if decision.rule else None,
                    "policy_version": decision.policy_version,
                    "key": key.name,
                },
                separators=(",", ":"),
            )
        )
    return decision_id
