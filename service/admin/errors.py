"""Errors on admin pages are pages (the API's stay JSON), with the status the error carries."""

from __future__ import annotations

import logging

from flask import abort, render_template
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from service.admin.blueprint import bp
from service.errors import ServiceError

log = logging.getLogger("workflow_authz.admin")

CSRF_MESSAGE = (
    "This form has expired or did not come from this site. Nothing was changed. "
    "Go back, reload the page and try again."
)


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException) -> ResponseReturnValue:
    """An HTTP error as a page, with the same status the JSON API would use."""
    message = CSRF_MESSAGE if isinstance(error, CSRFError) else error.description or error.name
    return _error_page(error.code or 500, error.name, message)


@bp.errorhandler(ServiceError)
def service_error(error: ServiceError) -> ResponseReturnValue:
    """A domain error (store unavailable, unknown tenant, ...) as a page."""
    if error.status >= 500:
        log.warning("%s: %s (cause: %r)", error.code, error.message, error.__cause__)
    return _error_page(error.status, error.code.replace("_", " ").capitalize(), error.message)


@bp.errorhandler(Exception)
def unexpected(error: Exception) -> ResponseReturnValue:
    """A bug: logged with its trace, shown as a plain page without details."""
    log.exception("unexpected error on an admin page")
    return _error_page(500, "Internal error", "Something went wrong. Nothing was changed.")


def _error_page(status: int, title: str, message: str) -> ResponseReturnValue:
    """The error page, with the status the error carries."""
    return render_template("admin/error.html", title=title, message=message, status=status), status


@bp.get("/<path:_unknown>")
def not_found(_unknown: str) -> ResponseReturnValue:
    """Unknown admin addresses get the admin 404 page rather than the API's JSON."""
    abort(404)
