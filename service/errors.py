"""The error family: each error knows its HTTP status, JSON code and CLI exit code."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service reports to a caller: an HTTP status and JSON code for the
    API, an exit code for the CLI (each subclass sets them in its class line)."""

    status = 500
    code = "internal"
    exit_code = 1

    def __init_subclass__(cls, status: int = 0, code: str = "", exit_code: int = 0) -> None:
        super().__init_subclass__()
        cls.status, cls.code = status or cls.status, code or cls.code
        cls.exit_code = exit_code or cls.exit_code

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidRequest(ServiceError, status=400, code="invalid_request", exit_code=2):
    """The question is malformed; `field` names the culprit (on the CLI: bad usage)."""


class Unauthorized(ServiceError, status=401, code="unauthorized"):
    """No key, or a key that is not valid."""


class Forbidden(ServiceError, status=403, code="forbidden"):
    """The key is valid, but not for that tenant."""


class NotAllowed(ServiceError, status=403, code="not_allowed"):
    """The policy does not let this role perform a state change (distinct from a bad key)."""


class NotFound(ServiceError, status=404, code="not_found"):
    """No such tenant or assessment."""


class Conflict(ServiceError, status=409, code="conflict"):
    """The change collides with the current state (it exists, it moved on, it is final)."""


class RateLimited(ServiceError, status=429, code="rate_limited"):
    """Too many failed authentications from one address; `retry_after` in seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(ServiceError, status=503, code="unavailable"):
    """The store cannot be read or written: the service cannot answer, and never allows."""

    retryable = False  # True when the connection died: a read may be tried once more


class CommitUnknown(Unavailable):
    """The connection was lost during a commit, which may have reached the server: the change
    may have been saved. Never "nothing was written" -- the caller must read before retrying."""

    def __init__(self) -> None:
        super().__init__(
            "the store connection was lost while committing: the change may have been saved or "
            "not; read the current state before trying again"
        )
