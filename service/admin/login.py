"""Logging in and out, and the guard that sends every other admin page to the login first."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from service import accounts
from service.admin.blueprint import bp, csrf
from service.admin.context import admin
from service.db import store
from service.errors import RateLimited
from service.limits import MAX_IDENTIFIER, storable
from service.throttle import LOGIN_BY_ACCOUNT, LOGIN_BY_ADDRESS, Budget, client, throttle

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
    """Log in with an account made by `workflow-authz admins create`. Failures are limited per
    address and per (username, address), never per account; an address over a limit gets 429
    before any hash is checked, the same for every username, known or not."""
    if request.method == "GET":
        return render_template("admin/login.html", next=request.args.get("next", ""))
    username = request.form.get("username", "").strip().lower()  # phones capitalise
    username = username if storable(username) else ""  # no account has such a name
    counted = _counted_as(username)
    try:
        for budget, identifiers in counted:
            throttle().check(budget, *identifiers)
        result = accounts.check_login(store(), username, request.form.get("password", ""))
    except RateLimited as limited:
        return _login_refused(username, limited)
    if result.admin_id is None:
        for budget, identifiers in counted:
            throttle().fail(budget, *identifiers)
        return _login_refused(username)
    throttle().forget(LOGIN_BY_ACCOUNT, *counted[0][1])
    session.clear()  # a fresh session: no fixation of one made before logging in
    session.permanent = True
    session["admin_id"] = result.admin_id
    session["session_version"] = result.session_version
    return redirect(_safe_next(request.form.get("next", "")), 303)


def _counted_as(username: str) -> list[tuple[Budget, tuple[str, ...]]]:
    """The failure budgets a login from this request draws on: (username, address), then the
    address. A name longer than any username is cut, so a key stays small."""
    address = client(request.remote_addr)
    name = username[: MAX_IDENTIFIER + 1]
    return [(LOGIN_BY_ACCOUNT, (name, address)), (LOGIN_BY_ADDRESS, (address,))]


def _login_refused(username: str, limited: RateLimited | None = None) -> ResponseReturnValue:
    """The login page again, saying why; 429 with Retry-After when over a limit (it names no
    account: an unknown username is answered as a known one)."""
    next_url = request.form.get("next", "")
    if limited is None:
        error = "Wrong username or password."
        return render_template("admin/login.html", error=error, username=username, next=next_url)
    error = (
        "Too many logins are being checked right now: try again in a second."
        if isinstance(limited, accounts.HashesBusy)
        else f"Too many failed logins from your address: try again in {limited.retry_after} s."
    )
    page = render_template("admin/login.html", error=error, username=username, next=next_url)
    return page, 429, {"Retry-After": str(limited.retry_after)}


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
