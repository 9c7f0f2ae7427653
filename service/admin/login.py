"""Logging in and out, and the guard that sends every other admin page to the login first."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from flask import flash, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from service import accounts
from service.admin.blueprint import bp, csrf, when
from service.admin.context import admin
from service.db import store
from service.limits import storable
from service.models import utcnow

PUBLIC_ENDPOINTS = {"admin.login", "admin.static"}


@bp.before_request
def guard() -> ResponseReturnValue | None:
    """A CSRF check on every POST; a login for every page but the login page and static files."""
    if request.method == "POST":
        csrf.protect()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    account = _signed_in()
    if account is None:
        return redirect(url_for("admin.login", next=_here()))
    g.admin = account
    return None


def _signed_in() -> accounts.Account | None:
    """The admin named by the session, read again from the store: a session that was ended
    (logout, new password, disabled or deleted account) signs nobody in, and is dropped."""
    admin_id, version = session.get("admin_id"), session.get("session_version")
    if not isinstance(admin_id, int) or not isinstance(version, int):
        return None
    with store().read() as conn:
        account = accounts.signed_in(conn, admin_id, version)
    if account is None:
        session.clear()
    return account


def _here() -> str:
    """This request's path and query, to come back to after logging in."""
    query = request.query_string.decode("utf-8", "replace")
    return f"{request.path}?{query}" if query else request.path


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Log in with an account made by `workflow-authz admins create`."""
    if request.method == "GET":
        return render_template("admin/login.html", next=request.args.get("next", ""))
    username = request.form.get("username", "").strip().lower()  # phones capitalise
    username = username if storable(username) else ""  # no account has such a name
    result = accounts.check_login(store(), username, request.form.get("password", ""))
    if result.admin_id is None:
        return _login_refused(username, result.locked_until)
    session.clear()  # a fresh session: no fixation of one made before logging in
    session.permanent = True
    session["admin_id"] = result.admin_id
    session["session_version"] = result.session_version
    return redirect(_safe_next(request.form.get("next", "")), 303)


def _login_refused(username: str, locked_until: datetime | None) -> ResponseReturnValue:
    """The login page again, saying why; 429 with Retry-After while the account is locked."""
    next_url = request.form.get("next", "")
    if locked_until is None:
        error = "Wrong username or password."
        return render_template("admin/login.html", error=error, username=username, next=next_url)
    error = (
        f"Too many failed logins: this account is locked until {when(locked_until)}. "
        "Try again then."
    )
    page = render_template("admin/login.html", error=error, username=username, next=next_url)
    seconds = max(1, int((locked_until - utcnow()).total_seconds()))
    return page, 429, {"Retry-After": str(seconds)}


def _safe_next(target: str) -> str:
    """Where to go after logging in: an admin page of this site, never another site. A target
    holding anything but printable ASCII (a CR/LF would split the Location header; a browser
    drops tabs and newlines, so `/<tab>/evil.example` leads off-site) or a backslash is ignored, as
    is any with a scheme or a host."""
    if not (target.isascii() and target.isprintable()) or "\\" in target:
        return url_for("admin.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin/"):
        return url_for("admin.index")
    return target


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End every session of this admin, in every browser: a copy of the cookie is refused too."""
    with store().write() as conn:
        accounts.end_sessions(conn, admin().id)
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("admin.login"), 303)
