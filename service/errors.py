"""The error family: each error knows its HTTP status, JSON code and CLI exit code."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service reports to a caller."""

    status = 500
    code = "internal"
    exit_code = 1

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidRequest(ServiceError):
    status, code, exit_code = 400, "invalid_request", 2


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class NotAllowed(ServiceError):
    """The policy does not let this role perform a state change (distinct from a bad key)."""

    status, code = 403, "not_allowed"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Conflict(ServiceError):
    status, code = 409, "conflict"


class TooLarge(ServiceError):
    status, code = 413, "too_large"


class RateLimited(ServiceError):
    """Too many failed authentications from one address; `retry_after` in seconds."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(ServiceError):
    """The store cannot be read or written: the service cannot answer, and never allows."""

    status, code = 503, "unavailable"
    retryable = False  # True when the connection died: a read may be tried once more
