"""The sysadmin's web form at /admin: login, the Workflow page with its review step, the audit log.

HTML for people, never JSON: errors on these pages render as pages. Every POST carries a CSRF
token; every answer forbids framing, scripts and caching. Views are thin: the matrix rules live in
matrix.py and every policy write goes through PolicyEngine.replace in one transaction.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import (
    Connection,
    Select,
    String,
    and_,
    cast,
    func,
    literal,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy import make_url as parse_url
from werkzeug.exceptions import HTTPException
from werkzeug.security import check_password_hash, generate_password_hash

from service import matrix
from service.config import ConfigError
from service.db import Database
from service.errors import Conflict, ServiceError
from service.models import Admin, Assessment, PolicyChange, PolicyVersion, Transition, utcnow
from service.policies import Cell, PolicyEngine, current_version, tenant_cells, tenants
from service.workflows import Area, Workflow

log = logging.getLogger("workflow_authz.admin")

bp = Blueprint(
    "admin", __name__, url_prefix="/admin", static_folder="static", static_url_path="/static"
)
csrf = CSRFProtect()

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=8)
PAGE_SIZE = 50
PUBLIC_ENDPOINTS = {"admin.login", "admin.static"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# -- set-up ------------------------------------------------------------------------------------


def init_app(app: Flask) -> None:
    """CSRF for the admin forms only (the API authenticates by key), then the blueprint."""
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.config["WTF_CSRF_TIME_LIMIT"] = None  # the token lives as long as the session
    app.session_interface = SecureOverHttpsSessions()
    csrf.init_app(app)
    app.register_blueprint(bp)


class SecureOverHttpsSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the Secure flag whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        """Secure when configured so, or when this request arrived over HTTPS."""
        configured = bool(app.config["SESSION_COOKIE_SECURE"])
        return configured or (has_request_context() and request.is_secure)


def secret_key(config: Mapping[str, Any]) -> str:
    """The key that signs admin sessions: the configured one; else one kept in a file beside a
    SQLite store (every process on that host reads the same file); else, in tests only, a key
    per process. Any other store means several hosts, which must share a key: it must be set."""
    if config["SECRET_KEY"]:
        return str(config["SECRET_KEY"])
    url = parse_url(config["DATABASE_URL"])
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return _persisted_key(Path(url.database).parent / "secret_key")
    if config.get("TESTING"):
        return secrets.token_hex(32)
    raise ConfigError(
        "set WORKFLOW_AUTHZ_SECRET_KEY (e.g. `python -c 'import secrets; "
        "print(secrets.token_hex(32))'`): with a store other than a local SQLite file every "
        "process and host must sign admin sessions with the same key"
    )


def _persisted_key(path: Path) -> str:
    """Read the key file, creating it first when absent. The new key is written to a private
    temporary file and hard-linked into place, so processes starting together share one key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(secrets.token_hex(32))
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process won the race; use its key
        finally:
            os.unlink(temporary)
    return path.read_text(encoding="ascii").strip()


# -- request guard, headers and errors --------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    """The admin of this request; `tenant` None means it may manage every tenant."""

    id: int
    username: str
    tenant: str | None


def _db() -> Database:
    """The store this app was built with."""
    db: Database = current_app.extensions["workflow_authz.db"]
    return db


def _engine() -> PolicyEngine:
    """The policy engine: the only writer of policy rows."""
    engine: PolicyEngine = current_app.extensions["workflow_authz.policies"]
    return engine


def _workflow() -> Workflow:
    """Areas, phases and roles, as policy/workflow.toml defines them."""
    return _engine().workflow


def _admin() -> SignedIn:
    """The admin the guard signed in for this request."""
    admin: SignedIn = g.admin
    return admin


@bp.before_request
def guard() -> ResponseReturnValue | None:
    """A CSRF check on every POST; a login for every page but the login page and static files."""
    if request.method == "POST":
        csrf.protect()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    admin = _signed_in()
    if admin is None:
        return redirect(url_for("admin.login", next=_here()))
    g.admin = admin
    return None


def _signed_in() -> SignedIn | None:
    """The admin named by the session, read again from the store (a deleted admin is out)."""
    admin_id = session.get("admin_id")
    if not isinstance(admin_id, int):
        return None
    with _db().read() as conn:
        row = conn.execute(
            select(Admin.id, Admin.username, Admin.tenant).where(Admin.id == admin_id)
        ).one_or_none()
    if row is None:
        session.clear()
        return None
    return SignedIn(row.id, row.username, row.tenant)


def _here() -> str:
    """This request's path and query, to come back to after logging in."""
    query = request.query_string.decode("utf-8", "replace")
    return f"{request.path}?{query}" if query else request.path


@bp.after_request
def security_headers(response: Any) -> Any:
    """No framing, no script, no third-party anything, no caching of pages with tokens."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.context_processor
def page_helpers() -> dict[str, Any]:
    """Names every admin template may use."""
    return {
        "workflow": _workflow(),
        "admin": g.get("admin"),
        "field_name": matrix.field_name,
        "when": when,
        "plural": matrix.plural,
    }


def when(moment: datetime | None) -> str:
    """A timestamp as people read it: '2025-03-01 14:05 UTC'."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException) -> ResponseReturnValue:
    """Errors on admin pages are pages, with the same status the JSON API would use."""
    status = error.code or 500
    message = error.description or error.name
    if isinstance(error, CSRFError):
        message = (
            "This form has expired or did not come from this site. Nothing was changed. "
            "Go back, reload the page and try again."
        )
    return _error_page(status, error.name, message)


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


# -- login and logout --------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResult:
    """A login attempt's outcome: the admin's id on success, the lock's end when locked."""

    admin_id: int | None
    locked_until: datetime | None = None


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Log in with an account made by `workflow-authz admins create`."""
    if request.method == "GET":
        return render_template("admin/login.html", next=request.args.get("next", ""))
    username = request.form.get("username", "").strip().lower()  # phones capitalise
    result = check_login(_db(), username, request.form.get("password", ""))
    if result.admin_id is None:
        return _login_refused(username, result.locked_until)
    session.clear()  # a fresh session: no fixation of one made before logging in
    session.permanent = True
    session["admin_id"] = result.admin_id
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
    """Where to go after logging in: an admin page of this site, never another site."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin/") or "\\" in target:
        return url_for("admin.index")
    return target


def check_login(db: Database, username: str, password: str) -> LoginResult:
    """Check a password, counting failures: after MAX_FAILED_LOGINS in a row the account is
    locked for LOCKOUT. The slow hash is checked outside any write transaction."""
    with db.read() as conn:
        row = conn.execute(
            select(Admin.id, Admin.password_hash, Admin.locked_until).where(
                Admin.username == username
            )
        ).one_or_none()
    if row is None:
        check_password_hash(_dummy_hash(), password)  # as slow as for a real account
        return LoginResult(None)
    if row.locked_until is not None and row.locked_until > utcnow():
        return LoginResult(None, row.locked_until)
    correct = check_password_hash(row.password_hash, password)
    with db.write() as conn:
        return _record_login(conn, row.id, correct)


def _record_login(conn: Connection, admin_id: int, correct: bool) -> LoginResult:
    """Reset the failure count on success; count a failure and lock when it reaches the limit."""
    now = utcnow()
    row = conn.execute(
        select(Admin.failed_logins, Admin.locked_until)
        .where(Admin.id == admin_id)
        .with_for_update()
    ).one()
    if row.locked_until is not None and row.locked_until > now:
        return LoginResult(None, row.locked_until)  # locked by a concurrent attempt
    failures = 0 if correct else row.failed_logins + 1
    until = now + LOCKOUT if failures >= MAX_FAILED_LOGINS else None
    conn.execute(
        update(Admin)
        .where(Admin.id == admin_id)
        .values(failed_logins=0 if until else failures, locked_until=until)
    )
    return LoginResult(admin_id if correct else None, until)


@cache
def _dummy_hash() -> str:
    """A hash to check unknown usernames against, so they take as long as known ones."""
    return generate_password_hash(secrets.token_hex(16))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session."""
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("admin.login"), 303)


# -- tenants -----------------------------------------------------------------------------------


@bp.get("/")
def index() -> ResponseReturnValue:
    """The first area's Workflow page (of the tenant asked for, or the only one there is)."""
    area = _workflow().areas[0]
    tenant = _tenant(request.args.get("tenant"))  # url_for leaves out None
    return redirect(url_for("admin.workflow_page", area_id=area.id, tenant=tenant))


@bp.get("/tenants")
def tenant_picker() -> ResponseReturnValue:
    """All-tenant admins pick the tenant to manage (straight through when there is only one)."""
    admin = _admin()
    if admin.tenant is not None:
        return redirect(url_for("admin.index", tenant=admin.tenant))
    with _db().read() as conn:
        names = tenants(conn)
    if len(names) == 1:
        return redirect(url_for("admin.index", tenant=names[0]))
    return render_template("admin/tenants.html", tenants=names, tenant=None)


def _tenant(requested: str | None) -> str | None:
    """The tenant a page is about: a tenant admin's own (403 for any other); for an all-tenant
    admin the one asked for, the only tenant there is, or None: the admin has to pick one."""
    admin = _admin()
    if admin.tenant is not None:
        if requested and requested != admin.tenant:
            abort(403, f"You manage tenant {admin.tenant!r} only.")
        return admin.tenant
    if requested:
        return requested
    with _db().read() as conn:
        names = tenants(conn)
    return names[0] if len(names) == 1 else None


# -- the Workflow page -------------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """What the store holds for a tenant's area: version, who last changed it, the cells."""

    version: int
    updated_by: str
    updated_at: datetime
    cells: list[Cell]


def _area(area_id: str) -> Area:
    """The area named in the URL; 404 for any other."""
    area = _workflow().area_by_id.get(area_id)
    if area is None:
        abort(404, f"There is no workflow area {area_id!r}.")
    return area


def _stored(conn: Connection, tenant: str, area: Area) -> Stored:
    """The tenant's version row and the area's cells, in the caller's transaction."""
    row = conn.execute(
        select(PolicyVersion.version, PolicyVersion.updated_by, PolicyVersion.updated_at).where(
            PolicyVersion.tenant == tenant
        )
    ).one_or_none()
    if row is None:
        abort(404, f"There is no tenant {tenant!r}.")
    return Stored(row.version, row.updated_by, row.updated_at, tenant_cells(conn, tenant, area.id))


def _load(tenant: str, area: Area) -> Stored:
    """What the store holds now, in a read transaction of its own."""
    with _db().read() as conn:
        return _stored(conn, tenant, area)


@bp.get("/workflow/<area_id>")
def workflow_page(area_id: str) -> ResponseReturnValue:
    """The matrix as stored now."""
    area = _area(area_id)
    tenant = _tenant(request.args.get("tenant"))
    if tenant is None:
        return redirect(url_for("admin.tenant_picker"))
    stored = _load(tenant, area)
    return _form_page(tenant, area, stored, matrix.from_cells(area, stored.cells), stored.version)


@bp.post("/workflow/<area_id>")
def workflow_submit(area_id: str) -> ResponseReturnValue:
    """The form's steps: `review` the submitted matrix, go `back` to editing it, or `save` it."""
    area = _area(area_id)
    tenant = _tenant(request.form.get("tenant"))
    loaded_version = request.form.get("version", type=int)
    if tenant is None or loaded_version is None:
        abort(400, "The form lacks its tenant or policy version: reload the page.")
    stored = _load(tenant, area)
    current = matrix.from_cells(area, stored.cells)
    draft, problems = matrix.from_form(_workflow(), area, request.form, current)
    step = request.form.get("step", "review")
    if step == "back":
        return _form_page(tenant, area, stored, draft, loaded_version)
    problems += matrix.validate(_workflow(), area, draft)
    if problems:
        return _form_page(tenant, area, stored, draft, loaded_version, problems), 400
    if loaded_version != stored.version:
        return _stale_page(tenant, area, stored, draft, loaded_version)
    if step == "save":
        return _save(tenant, area, draft, loaded_version)
    return _review_page(tenant, area, stored, draft)


def _form_page(
    tenant: str,
    area: Area,
    stored: Stored,
    shown: matrix.AreaMatrix,
    loaded_version: int,
    problems: list[matrix.Problem] | None = None,
    **extra: Any,
) -> str:
    """The Workflow page showing `shown` (stored or draft) for the version it was loaded at."""
    problems = problems or []
    rows = [
        {
            "phase": phase,
            "row": shown.row(phase.id),
            "final": area.is_final(phase.id),
            "problems": [p.message for p in problems if p.phase == phase.id],
        }
        for phase in area.phases
    ]
    return render_template(
        "admin/workflow.html",
        tenant=tenant,
        area=area,
        stored=stored,
        rows=rows,
        loaded_version=loaded_version,
        problems=problems,
        **extra,
    )


def _review_page(
    tenant: str, area: Area, stored: Stored, draft: matrix.AreaMatrix
) -> ResponseReturnValue:
    """Each changed cell in plain words, and the assessments it affects, before saving."""
    workflow = _workflow()
    found = matrix.changes(workflow, stored.cells, matrix.to_cells(draft))
    if not found:
        flash("Nothing to review: the form matches the saved settings.")
        return _form_page(tenant, area, stored, draft, stored.version)
    with _db().read() as conn:
        counts = _phase_counts(conn, tenant, area)
    return render_template(
        "admin/review.html",
        tenant=tenant,
        area=area,
        stored=stored,
        changes=found,
        impacts=matrix.impacts(workflow, area, found, counts),
        fields=matrix.form_fields(workflow, draft),
    )


def _phase_counts(conn: Connection, tenant: str, area: Area) -> dict[str, int]:
    """How many of the tenant's assessments of the area are in each phase right now."""
    rows = conn.execute(
        select(Assessment.phase, func.count())
        .where(Assessment.tenant == tenant, Assessment.area == area.id)
        .group_by(Assessment.phase)
    )
    return {phase: count for phase, count in rows}


def _save(
    tenant: str, area: Area, draft: matrix.AreaMatrix, loaded_version: int
) -> ResponseReturnValue:
    """Replace the area's rows, bump the version and audit each cell, in one transaction; a
    version that moved since the form was loaded refuses the whole save."""
    try:
        with _db().write() as conn:
            result = _engine().replace(
                conn,
                tenant,
                matrix.to_cells(draft),
                actor=_admin().username,
                area=area.id,
                expected_version=loaded_version,
            )
    except Conflict:
        return _stale_page(tenant, area, _load(tenant, area), draft, loaded_version)
    if result.changes:
        count = len(result.changes)
        flash(
            f"Saved {count} change{'s' * (count != 1)}: the policy is now version {result.version}."
        )
    else:
        flash("Nothing changed: the form matched the saved settings.")
    return redirect(url_for("admin.workflow_page", area_id=area.id, tenant=tenant), 303)


def _stale_page(
    tenant: str, area: Area, stored: Stored, draft: matrix.AreaMatrix, loaded_version: int
) -> ResponseReturnValue:
    """Refuse a form loaded before someone else's save: show the store's settings now, and the
    edits that would bring them to the refused form, to apply again deliberately."""
    pending = matrix.changes(_workflow(), stored.cells, matrix.to_cells(draft))
    page = _form_page(
        tenant,
        area,
        stored,
        matrix.from_cells(area, stored.cells),
        stored.version,
        stale_from=loaded_version,
        pending=pending,
    )
    return page, 409


# -- audit ---------------------------------------------------------------------------------------


@bp.get("/audit")
def audit() -> ResponseReturnValue:
    """Policy changes and workflow transitions of the tenant, newest first, filtered, paged."""
    tenant = _tenant(request.args.get("tenant"))
    if tenant is None:
        return redirect(url_for("admin.tenant_picker"))
    area = request.args.get("area", "")
    area = area if area in _workflow().area_by_id else ""
    person = request.args.get("person", "").strip()
    page = max(1, request.args.get("page", 1, type=int) or 1)
    with _db().read() as conn:
        if current_version(conn, tenant) is None:
            abort(404, f"There is no tenant {tenant!r}.")
        entries = _audit_entries(conn, tenant, area or None, person or None, page)
    return render_template(
        "admin/audit.html",
        tenant=tenant,
        entries=[_audit_line(e) for e in entries[:PAGE_SIZE]],
        area=area,
        person=person,
        page=page,
        more=len(entries) > PAGE_SIZE,
    )


def _audit_entries(
    conn: Connection, tenant: str, area: str | None, person: str | None, page: int
) -> list[Any]:
    """One page (plus one row, to know if there is more) of both logs merged by time."""
    merged = union_all(
        _policy_log(tenant, area, person), _transition_log(tenant, area, person)
    ).subquery()
    query = (
        select(merged)
        .order_by(merged.c.at.desc(), merged.c.kind, merged.c.id.desc())
        .limit(PAGE_SIZE + 1)
        .offset((page - 1) * PAGE_SIZE)
    )
    return list(conn.execute(query))


def _policy_log(tenant: str, area: str | None, person: str | None) -> Select[*tuple[Any, ...]]:
    """Changed cells, in the columns both logs share."""
    query = select(
        literal("policy").label("kind"),
        PolicyChange.id,
        PolicyChange.at,
        PolicyChange.actor,
        PolicyChange.area,
        PolicyChange.phase,
        cast(null(), String).label("to_phase"),
        PolicyChange.role,
        PolicyChange.action,
        PolicyChange.after,
        PolicyChange.version,
        cast(null(), String).label("assessment_id"),
    ).where(PolicyChange.tenant == tenant)
    if area:
        query = query.where(PolicyChange.area == area)
    if person:
        query = query.where(PolicyChange.actor == person)
    return query


def _transition_log(tenant: str, area: str | None, person: str | None) -> Select[*tuple[Any, ...]]:
    """Phase changes of assessments (their area read from the assessment), same columns."""
    query = (
        select(
            literal("transition").label("kind"),
            Transition.id,
            Transition.at,
            Transition.actor,
            Assessment.area,
            Transition.from_phase.label("phase"),
            Transition.to_phase,
            Transition.role,
            literal("advance").label("action"),
            literal(True).label("after"),
            Transition.policy_version.label("version"),
            Transition.assessment_id,
        )
        .join(
            Assessment,
            and_(Assessment.tenant == Transition.tenant, Assessment.id == Transition.assessment_id),
        )
        .where(Transition.tenant == tenant)
    )
    if area:
        query = query.where(Assessment.area == area)
    if person:
        query = query.where(Transition.actor == person)
    return query


def _audit_line(entry: Any) -> dict[str, Any]:
    """An audit row for the template: when, who, what happened in plain words, which version."""
    workflow = _workflow()
    area = workflow.area_by_id.get(entry.area)
    if entry.kind == "policy":
        cell = (entry.role, entry.area, entry.phase, entry.action)
        what = matrix.describe(workflow, cell, bool(entry.after), tense="past")
    else:
        role = workflow.role(entry.role)
        what = (
            f"Advanced {area.label if area else entry.area} assessment {entry.assessment_id} "
            f"from {_phase_label(area, entry.phase)} to {_phase_label(area, entry.to_phase)} "
            f"as {role.label if role else entry.role}"
        )
    return {
        "kind": entry.kind,
        "at": entry.at,
        "actor": entry.actor,
        "what": what,
        "version": entry.version,
    }


def _phase_label(area: Area | None, phase_id: str) -> str:
    """A phase's label, or its id when the definition no longer has it."""
    phase = area.phase(phase_id) if area else None
    return phase.label if phase else phase_id
