"""The decision log: every decision and every write gets an id and one structured JSON line, so an
auditor can answer "who could see what, who changed what, when, and why"; and one per webhook
delivery attempt. Never a key, a password or a signing secret: the key's name and id only."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from service.errors import ServiceError
from service.keys import Key
from service.models import iso, utcnow
from service.policies import Decision

log = logging.getLogger("workflow_authz.decisions")


def _write(line: dict[str, Any]) -> None:
    """One line in the log at INFO."""
    _write_all([line])


def _write_all(lines: Iterable[dict[str, Any]]) -> None:
    """Each line as its own JSON log record at INFO, as `log.info` writes one but without
    looking up the caller (logging walks the stack for the file and line of every record, which
    no line shows): one record's fields are made once and copied for each line."""
    shared = log.makeRecord(log.name, logging.INFO, __file__, 0, "", (), None).__dict__
    for line in lines:
        entry = logging.LogRecord.__new__(logging.LogRecord)
        entry.__dict__.update(shared)
        entry.msg = orjson.dumps(line).decode()
        log.handle(entry)


def new_id() -> str:
    """A new decision id: 128 random bits, as a uuid4's hex; a fifth of its cost."""
    return os.urandom(16).hex()


def record_all(decided: Sequence[tuple[Decision, str | None]], key: Key) -> list[str]:
    """Log each decision (less its prose reason, with the assessment it was about) as its own
    JSON line and log record, and return their new ids in order: a batch's decisions at once.

    The per-line work is what a line must differ in: the ids are drawn in one read of random
    bytes (128 bits each, as `new_id`), the decisions share the moment they were made (one read
    of the store) and one log record's fields (`_write_all`)."""
    count = len(decided)
    drawn = os.urandom(16 * count).hex()
    ids = [drawn[32 * i : 32 * i + 32] for i in range(count)]
    if not count or not log.isEnabledFor(logging.INFO):
        return ids
    at = iso(utcnow())
    _write_all(
        {
            "event": "decision",
            "decision_id": decision_id,
            "at": at,
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
        for decision_id, (decision, assessment) in zip(ids, decided, strict=True)
    )
    return ids


@dataclass(slots=True)
class Write:
    """One write of an assessment (its creation, an advance, a reopen) and its line in the log.

    Its id exists from the start, for the answer. It is begun once the write is asked for by an
    authenticated key in a valid request (a malformed one writes nothing, here either); the
    domain fills in where the assessment was and goes as it learns it; `logged` writes the line
    when the block around the write's transaction ends, so `allowed` true means committed.
    """

    event: Literal["transition", "create"]
    decision_id: str = field(default_factory=new_id)
    facts: dict[str, Any] | None = None
    from_phase: str | None = None
    to_phase: str | None = None
    policy_version: int | None = None

    def begin(
        self,
        key: Key,
        tenant: str,
        assessment: str,
        *,
        actor: str | None,
        role: str | None = None,
        action: str | None = None,
    ) -> None:
        """Who asks for what (a creation has no role or action): from here on the write gets
        its line, whatever its end."""
        self.facts = dict(
            tenant=tenant,
            key=key.name,
            key_id=key.id,
            actor=actor,
            role=role,
            action=action,
            assessment=assessment,
        )

    @property
    def begun(self) -> bool:
        return self.facts is not None

    @contextmanager
    def logged(self) -> Iterator[Write]:
        """Write the line when the block ends, if the write was begun: allowed (made), or not
        with the status and code of the error that refused it (a store failure included)."""
        try:
            yield self
        except Exception as error:
            refusal = error if isinstance(error, ServiceError) else ServiceError(str(error))
            self._log(refusal)
            raise
        self._log(None)

    def _log(self, refusal: ServiceError | None) -> None:
        """The write's one line: what was asked, where the assessment was, how it ended."""
        if self.facts is None or not log.isEnabledFor(logging.INFO):
            return
        line = {
            "event": self.event,
            "decision_id": self.decision_id,
            "at": iso(utcnow()),
            **self.facts,
            "from_phase": self.from_phase,
            "to_phase": self.to_phase,
            "policy_version": self.policy_version,
            "allowed": refusal is None,
            "status": None if refusal is None else refusal.status,
            "error": None if refusal is None else refusal.code,
        }
        _write(line)


def record_delivery(
    *,
    tenant: str,
    endpoint_id: int,
    event_id: str,
    attempt: int,
    result: str,
    status: int | None,
    error: str | None,
    seconds: float,
) -> None:
    """Log one webhook delivery attempt: which event to which endpoint, its attempt number
    (1 the first time), how it ended (metrics.DELIVERY_RESULTS, the status, the error in words)
    and how long it took."""
    if not log.isEnabledFor(logging.INFO):
        return
    line = {
        "event": "webhook_delivery",
        "at": iso(utcnow()),
        "tenant": tenant,
        "endpoint_id": endpoint_id,
        "event_id": event_id,
        "attempt": attempt,
        "result": result,
        "status": status,
        "error": error,
        "duration_ms": round(seconds * 1000, 1),
    }
    _write(line)


def record_policy_write(
    tenant: str,
    actor: str,
    area: str | None,
    outcome: tuple[int, int] | ServiceError,
) -> str:
    """Log one policy write once its outcome is known: saved (`outcome` is the version in force
    and how many cells changed) or refused (the error: a stale form's 409, a store failure)."""
    decision_id = new_id()
    if not log.isEnabledFor(logging.INFO):
        return decision_id
    ending: dict[str, Any]
    if isinstance(outcome, ServiceError):
        ending = dict(policy_version=None, changes=None, allowed=False, status=outcome.status)
        ending["error"] = outcome.code
    else:
        version, changes = outcome
        ending = dict(policy_version=version, changes=changes, allowed=True, status=None)
        ending["error"] = None
    line = {
        "event": "policy",
        "decision_id": decision_id,
        "at": iso(utcnow()),
        "tenant": tenant,
        "actor": actor,
        "area": area,
        **ending,
    }
    _write(line)
    return decision_id
