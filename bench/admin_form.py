"""A policy change to watch: one cell of a tenant of its own, saved through the admin form.

propagation and soak both toggle a parent's view of the phase one assessment is in, and ask
POST /authorize about it; the form is driven as a browser would (session cookie, CSRF token).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import urlencode

from bench.internals import Cell, Local, Workflow, form_fields
from bench.server import Reply, Server

TENANT = "propagation"
ROLE = "parent"
ACTION = "view"
CSRF = re.compile(r'name="csrf_token"\s+value="([^"]+)"')


class PropagationError(RuntimeError):
    """A save failed, or a server never gave the new answer within the time allowed."""


@dataclass(frozen=True)
class Target:
    """The cell toggled and the question about one assessment whose answer it decides."""

    tenant: str
    assessment: str
    area: str
    phase: str

    @property
    def cell(self) -> Cell:
        """The matrix cell that decides the question."""
        return (ROLE, self.area, self.phase, ACTION)

    def question(self) -> dict[str, str]:
        """The POST /authorize body asked of the servers."""
        return {
            "tenant": self.tenant,
            "role": ROLE,
            "action": ACTION,
            "assessment": self.assessment,
        }


def prepare_target(url: str, workflow: Workflow) -> Target:
    """A new tenant with the default policy (a matrix the form accepts) and one assessment."""
    area = workflow.areas[0]
    target = Target(TENANT, "propagation-1", area.id, area.first_phase.id)
    local = Local.open(url)
    try:
        local.create_tenant(TENANT, target.assessment, area.id)
    finally:
        local.close()
    return target


def ask(server: Server, key: str, target: Target) -> tuple[bool, int]:
    """The server's answer to the target question and the policy version it was decided at."""
    reply = server.post_json("/authorize", target.question(), key)
    if reply.status != 200:
        raise PropagationError(f"POST /authorize: {reply.status} {reply.body[:300]!r}")
    data = reply.json()
    return bool(data["allowed"]), int(data["policy_version"])


def toggled(cells: set[Cell], cell: Cell, allowed: bool) -> set[Cell]:
    """`cells` with `cell` added or removed."""
    return cells | {cell} if allowed else cells - {cell}


class AdminFormWriter:
    """Saves through the sysadmin form of a server: logs in once, then posts the area's matrix."""

    def __init__(
        self, server: Server, url: str, workflow: Workflow, target: Target, login: tuple[str, str]
    ) -> None:
        self.browser = Browser(server)
        self.local = Local.open(url)
        self.workflow = workflow
        self.target = target
        try:
            self.browser.log_in(*login)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the store connections."""
        self.local.close()

    def allowed(self) -> bool:
        """Whether the target cell is in the tenant's policy now."""
        return self.target.cell in self.local.cells(self.target.tenant, self.target.area)[1]

    def save(self, allowed: bool) -> int:
        """Post the form as a browser would after ticking or unticking the one checkbox."""
        tenant = self.target.tenant
        area = self.workflow.area_by_id[self.target.area]
        # what the page would have shown when it was loaded
        version, cells = self.local.cells(tenant, area.id)
        fields = [("tenant", tenant), ("version", str(version)), ("step", "save")]
        fields += form_fields(self.workflow, area, toggled(cells, self.target.cell, allowed))
        reply = self.browser.post_form(f"/admin/workflow/{area.id}", fields)
        if reply.status != 303 or version is None:
            raise PropagationError(f"admin save: {reply.status} {reply.body[:300]!r}")
        return version + 1


class Browser:
    """Just enough of a browser for the admin form: a session cookie and the CSRF token."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.cookies: dict[str, str] = {}
        self.token = ""

    def log_in(self, username: str, password: str) -> None:
        """Log in, then fetch a page again for the CSRF token of the new session."""
        self.refresh_token()
        reply = self.post_form("/admin/login", [("username", username), ("password", password)])
        if reply.status != 303:
            raise PropagationError(f"admin login: {reply.status} {reply.body[:300]!r}")
        self.refresh_token()

    def refresh_token(self) -> None:
        """Read the CSRF token from the login page (which every session may fetch)."""
        found = CSRF.search(self.get("/admin/login").body.decode("utf-8", "replace"))
        if found is None:
            raise PropagationError("no CSRF token on /admin/login")
        self.token = found.group(1)

    def get(self, path: str) -> Reply:
        """GET with the cookies held so far."""
        return self.send("GET", path, None, {})

    def post_form(self, path: str, fields: list[tuple[str, str]]) -> Reply:
        """POST url-encoded fields plus the CSRF token; redirects are not followed."""
        body = urlencode([("csrf_token", self.token), *fields]).encode()
        return self.send("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Reply:
        """One request with the cookies held so far; keeps the cookies the answer sets."""
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        reply = self.server.request(method, path, body, headers)
        for header in reply.cookies:
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            self.cookies.update({name: morsel.value for name, morsel in jar.items()})
        return reply
