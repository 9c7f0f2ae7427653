"""workflow-authz: decides who may view, edit and advance assessments at each workflow phase."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from service import db, policies, shapes, throttle
from service.config import ConfigError, load_config
from service.errors import RateLimited, ServiceError

log = logging.getLogger("workflow_authz")

HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    503: "unavailable",
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the service: settings, store, policy engine, blueprints and error handlers."""
    app = Flask(__name__)
    settings = load_config(config)
    app.config.update(settings)
    app.config["MAX_CONTENT_LENGTH"] = settings["MAX_BODY_BYTES"]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    _trust_proxies(app, settings["TRUSTED_PROXIES"])
    init_app(app)
    from service import api, authzen

    app.register_blueprint(api.bp)
    app.register_blueprint(authzen.bp)
    _register_admin(app)
    _register_errors(app)
    _register_metrics(app)
    return app


def _trust_proxies(app: Flask, count: int) -> None:
    """Read the client address from X-Forwarded-For, `count` hops from its end, when the operator
    said that many proxies stand in front (a client could write the header itself otherwise)."""
    if count < 0:
        raise ConfigError(f"WORKFLOW_AUTHZ_TRUSTED_PROXIES must be 0 or more, got {count}")
    if count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count)  # type: ignore[method-assign]


def init_app(app: Flask) -> None:
    """Attach each part built once per process: the store, the policy engine, the throttle.
    Each part's accessor lives with it (db.store(), policies.policy_engine())."""
    _configure_logging(app.config["LOG_LEVEL"])
    db.init_app(app)
    policies.init_app(app)
    throttle.init_app(app)


def _configure_logging(level: str) -> None:
    """Log lines to stderr as bare messages (decision lines are JSON), beside the server's own."""
    if not isinstance(logging.getLevelName(level.upper()), int):
        raise ConfigError(f"WORKFLOW_AUTHZ_LOG_LEVEL: unknown level {level!r}")
    log.setLevel(level.upper())
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)


def _register_admin(app: Flask) -> None:
    """The sysadmin form: sessions signed with a stable key in an HttpOnly, SameSite=Lax cookie
    (Secure over HTTPS), CSRF on its forms, and its blueprint with HTML error pages."""
    from service import admin

    app.config["SECRET_KEY"] = admin.secret_key(app.config)
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=admin.SESSION_LIFETIME,
    )
    admin.init_app(app)


def _register_errors(app: Flask) -> None:
    """One JSON error shape for every failure, with no stack trace or SQL in the answer."""

    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError) -> Response:
        if error.status >= 500:
            log.warning("%s: %s (cause: %r)", error.code, error.message, error.__cause__)
        response = _error(error.code, error.message, error.status, error.field)
        if isinstance(error, RateLimited):
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = HTTP_CODES.get(status, "error")
        return _error(code, error.description or error.name, status)

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("unexpected error")
        return _error("internal", "internal error", 500)


def _error(code: str, message: str, status: int, field: str | None = None) -> Response:
    """The one JSON error shape (shapes.ErrorBody), for every failure of every endpoint."""
    error = shapes.ErrorObject(code=code, message=message, field=field)
    return shapes.respond(shapes.ErrorBody(error=error), status)


def _register_metrics(app: Flask) -> None:
    """Count and time every request (imported here: `serve` sets the metrics folder first)."""
    from service.metrics import record_request

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def record(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule else None
        started = g.get("started", time.perf_counter())
        record_request(request.method, rule, response.status_code, time.perf_counter() - started)
        return response
