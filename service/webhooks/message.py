"""What one delivery attempt sends: the body and its Standard Webhooks headers.

The body is the same on every attempt of an event (its `webhook-id` too); the timestamp and the
signatures are of the attempt. Signed with the `standardwebhooks` library, the one receivers
verify with, never a hand-written scheme.
"""

from __future__ import annotations

from datetime import datetime
from math import floor

from standardwebhooks import Webhook

from service import shapes
from service.events import Entry

TYPE = "assessment.visibility"
"""The one kind of event the feed has: an assessment became visible, or stopped being visible,
to external systems."""
USER_AGENT = "workflow-authz-webhooks/1"


def body(entry: Entry) -> bytes:
    """The JSON body: the event object exactly as GET /events shows it, typed and timed."""
    return shapes.to_json(shapes.WebhookMessage(type=TYPE, timestamp=entry.at, data=entry))


def headers(entry: Entry, payload: bytes, secrets: list[str], now: datetime) -> dict[str, str]:
    """The attempt's headers: the event's id, the attempt's Unix time, one signature per secret
    (during a rotation's grace both, space-separated, as the specification allows)."""
    text = payload.decode()
    signatures = " ".join(Webhook(s).sign(entry.id, now, text) for s in secrets)
    return {
        "webhook-id": entry.id,
        "webhook-timestamp": str(floor(now.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
