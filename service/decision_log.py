"""The decision log: every decision gets an id and one structured JSON line, so an auditor can
answer "who could see what, when, and why". Never a key or a password: the key's name only."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from service.keys import Key

log = logging.getLogger("workflow_authz.decisions")


def record(answer: Mapping[str, Any], key: Key) -> str:
    """Log one answer (less its prose reason) as a JSON line and return its new decision id."""
    decision_id = uuid.uuid4().hex
    if log.isEnabledFor(logging.INFO):
        line = {
            "event": "decision",
            "decision_id": decision_id,
            "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            **{name: value for name, value in answer.items() if name != "reason"},
            "key": key.name,
        }
        log.info(json.dumps(line, separators=(",", ":")))
    return decision_id
