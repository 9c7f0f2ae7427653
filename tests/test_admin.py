"""The sysadmin's Workflow page through Flask's test client, on SQLite and PostgreSQL (issues 3
and 7): login with failures limited per address and per (username, address) and no account
lock, tenant scoping, CSRF, review then save in one transaction with an audit
row per cell, the reopen column, refusal of invalid matrices and of stale forms (nothing saved),
the audit log with advances and reopens, HTML errors and security headers on admin pages only, and
the session signing key."""

from __future__ import annotations

import json
import logging
import re
from contextlib import ExitStack
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select

from service import accounts, create_app, keys, policy_changes
from service.admin.audit import PAGE_SIZE
from service.audit import HistoryGap, PolicyEdit, policy_at
from service.cli import default_cells
from service.config import ConfigError
from service.db import Database
from service.models import Admin, PolicyChange, Transition, utcnow
from service.policies import PolicyEngine
from service.policies import store as rows
from service.policies.store import current_version, tenant_cells
from service.throttle import LOGIN_ACCOUNT, LOGIN_ADDRESS
from service.workflows import REOPEN, Cell, CellChange
from tests.conftest import Api

PASSWORD = "correct horse battery staple"
PARENT_SEES_APPROVAL = ("parent", "behaviour", "organisation_approval", "view")


# -- helpers: an admin as a browser would be ------------------------------------------------------


class FormFields(HTMLParser):
    """What a browser submits from the page's POST form of a class: hidden inputs, ticked
    checkboxes and each select's chosen option."""

    def __init__(self, form_class: str) -> None:
        super().__init__()
        self.form_class = form_class
        self.inside = False
        self.fields: dict[str, str] = {}
        self.select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = self.form_class in a.get("class", "").split()
        elif self.inside and tag == "input" and a.get("type") == "hidden":
            self.fields[a["name"]] = a.get("value", "")
        elif self.inside and tag == "input" and "checked" in a:
            self.fields[a["name"]] = a.get("value") or "on"
        elif self.inside and tag == "select":
            self.select = a["name"]
        elif (
            self.select and tag == "option" and ("selected" in a or self.select not in self.fields)
        ):
            self.fields[self.select] = a["value"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self.select = None


def form_fields(html: str, form_class: str = "matrix") -> dict[str, str]:
    reader = FormFields(form_class)
    reader.feed(html)
    return reader.fields


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "every form carries a CSRF token"
    return match.group(1)


def make_admin(db: Database, username: str, tenant: str | None = None) -> str:
    with db.write() as conn:
        accounts.create_admin(conn, username, tenant, PASSWORD)
    return username


def log_in(
    client: FlaskClient, username: str, password: str = PASSWORD, address: str = "127.0.0.1"
) -> Any:
    token = csrf_token(client.get("/admin/login").text)
    return client.post(
        "/admin/login",
        data={"csrf_token": token, "username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


@pytest.fixture
def sysadmin(app: Flask, db: Database) -> FlaskClient:
    """A client logged in as an admin of every tenant."""
    client = app.test_client()
    make_admin(db, "sysadmin")
    assert log_in(client, "sysadmin").status_code == 303
    return client


def behaviour_form(client: FlaskClient, tenant: str = "default") -> dict[str, str]:
    page = client.get(f"/admin/workflow/behaviour?tenant={tenant}")
    assert page.status_code == 200
    return form_fields(page.text)


def stored(db: Database, tenant: str = "default") -> tuple[int | None, list[Any], int]:
    """The tenant's policy version, its behaviour cells and the number of audit rows."""
    with db.read() as conn:
        audit = conn.execute(select(func.count()).select_from(PolicyChange)).scalar_one()
        return current_version(conn, tenant), tenant_cells(conn, tenant, "behaviour"), audit


def authorize(api: Api, role: str, phase: str, action: str = "view") -> bool:
    body = {"role": role, "action": action, "area": "behaviour", "phase": phase}
    answer = api.post("/authorize", body)
    assert answer.status_code == 200, answer.json
    allowed: bool = answer.json["allowed"]
    return allowed


# -- login -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/", "/admin/workflow/behaviour", "/admin/audit"])
def test_pages_redirect_to_the_login_when_not_logged_in(app: Flask, path: str) -> None:
    response = app.test_client().get(path)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/login?next={path}"


def test_logging_in_lands_on_the_page_asked_for_with_a_hardened_cookie(
    app: Flask, db: Database
) -> None:
    make_admin(db, "sysadmin")
    client = app.test_client()
    token = csrf_token(client.get("/admin/login?next=/admin/audit").text)
    response = client.post(
        "/admin/login",
        data={
            "csrf_token": token,
            "username": "sysadmin",
            "password": PASSWORD,
            "next": "/admin/audit",
        },
    )
    assert response.status_code == 303 and response.headers["Location"] == "/admin/audit"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_the_session_cookie_is_secure_over_https(app: Flask, db: Database) -> None:
    make_admin(db, "sysadmin")
    client = app.test_client()
    token = csrf_token(client.get("/admin/login", base_url="https://localhost").text)
    response = client.post(
        "/admin/login",
        base_url="https://localhost",
        headers={"Referer": "https://localhost/admin/login"},  # Flask-WTF checks it over HTTPS
        data={"csrf_token": token, "username": "sysadmin", "password": PASSWORD},
    )
    assert response.status_code == 303
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_login_never_sends_the_admin_to_another_site(app: Flask, db: Database) -> None:
    make_admin(db, "sysadmin")
    client = app.test_client()
    token = csrf_token(client.get("/admin/login").text)
    data = {"csrf_token": token, "username": "sysadmin", "password": PASSWORD}
    response = client.post("/admin/login", data=data | {"next": "https://evil.example/admin/"})
    assert response.headers["Location"] == "/admin/"


def test_a_wrong_password_or_unknown_name_is_refused_alike(app: Flask, db: Database) -> None:
    make_admin(db, "sysadmin")
    client = app.test_client()
    for username, password in [("sysadmin", "wrong password!!"), ("nobody", PASSWORD)]:
        response = log_in(client, username, password)
        assert response.status_code == 200
        assert "Wrong username or password." in response.text
    assert client.get("/admin/audit").status_code == 302


ACCOUNT_LIMIT = LOGIN_ACCOUNT[0].amount
ADDRESS_LIMIT = LOGIN_ADDRESS[0].amount
WRONG = "wrong password!!"


def refusal(response: Any, username: str) -> tuple[int, str, str]:
    """What a refused login shows, less what the request itself put there (its CSRF token and the
    username it typed): the same for two usernames means nothing tells them apart."""
    body = re.sub(r'name="csrf_token" value="[^"]+"', "", response.text)
    body = re.sub(r"retry in \d+ s|try again in \d+ s", "(wait)", body).replace(username, "(name)")
    return response.status_code, response.headers.get("Retry-After", "-") != "-", body


def test_failures_slow_that_address_down_for_that_name_alike_for_known_and_unknown_names(
    app: Flask, db: Database
) -> None:
    make_admin(db, "sysadmin")
    client = app.test_client()
    for username in ("sysadmin", "nobody"):
        answers = [log_in(client, username, WRONG, "10.0.0.1") for _ in range(ACCOUNT_LIMIT)]
        assert {a.status_code for a in answers} == {200}, "each failure up to the limit says so"
    known = log_in(client, "sysadmin", WRONG, "10.0.0.1")
    unknown = log_in(client, "nobody", WRONG, "10.0.0.1")
    assert known.status_code == 429 and 1 <= int(known.headers["Retry-After"]) <= 60
    assert "Too many failed logins from your address" in known.text
    assert "locked" not in known.text
    assert refusal(known, "sysadmin") == refusal(unknown, "nobody")
    assert log_in(client, "sysadmin", PASSWORD, "10.0.0.1").status_code == 429, (
        "from the failing address even the right password waits: it is not checked"
    )
    with db.read() as conn:
        assert conn.execute(select(Admin.failed_logins, Admin.locked_until)).one() == (0, None)


def test_nobody_can_lock_an_admin_out_from_another_address(app: Flask, db: Database) -> None:
    make_admin(db, "sysadmin")
    attacker, admin = app.test_client(), app.test_client()
    for _ in range(ADDRESS_LIMIT + 5):
        log_in(attacker, "sysadmin", WRONG, "10.0.0.66")
    assert log_in(attacker, "sysadmin", WRONG, "10.0.0.66").status_code == 429
    assert log_in(admin, "sysadmin", PASSWORD, "10.0.0.7").status_code == 303
    assert admin.get("/admin/audit").status_code == 200


def test_an_address_guessing_many_names_is_slowed_down_whatever_the_names(app: Flask) -> None:
    client = app.test_client()
    for i in range(ADDRESS_LIMIT):
        assert log_in(client, f"guess{i}", WRONG, "10.0.0.9").status_code == 200
    refused = log_in(client, "another-guess", WRONG, "10.0.0.9")
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert log_in(client, "another-guess", WRONG, "10.0.0.10").status_code == 200


def test_a_right_password_forgets_that_addresses_failures_for_that_name(
    app: Flask, db: Database
) -> None:
    make_admin(db, "sysadmin")
    client = app.test_client()
    for _ in range(2):  # twice the limit's failures in all, each run ended by a success
        for _ in range(ACCOUNT_LIMIT - 1):
            assert log_in(client, "sysadmin", WRONG, "10.0.0.11").status_code == 200
        assert log_in(client, "sysadmin", PASSWORD, "10.0.0.11").status_code == 303


def test_a_login_waits_for_a_free_hash_and_is_refused_quickly_when_none_frees(
    app: Flask, db: Database
) -> None:
    make_admin(db, "sysadmin")
    client = app.test_client()
    with ExitStack() as held:
        slots = range(accounts.HASHES_AT_ONCE)
        taken = [held.enter_context(accounts.hash_slots.taken(0)) for _ in slots]
        assert taken == [True] * accounts.HASHES_AT_ONCE, "no other test holds a slot"
        busy = log_in(client, "sysadmin", PASSWORD, "10.0.0.12")
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
        assert "being checked right now" in busy.text
    assert log_in(client, "sysadmin", PASSWORD, "10.0.0.12").status_code == 303, (
        "a busy refusal is not a failure"
    )


def test_logging_out_ends_the_session(sysadmin: FlaskClient) -> None:
    token = csrf_token(sysadmin.get("/admin/audit?tenant=default").text)
    assert sysadmin.post("/admin/logout", data={"csrf_token": token}).status_code == 303
    assert sysadmin.get("/admin/audit?tenant=default").status_code == 302


# -- CSRF and tenants ------------------------------------------------------------------------------


def test_a_post_without_its_csrf_token_is_refused_and_saves_nothing(
    sysadmin: FlaskClient, db: Database
) -> None:
    before = stored(db)
    form = behaviour_form(sysadmin)
    form.pop("csrf_token")
    form |= {"view-organisation_approval-parent": "on", "step": "save"}
    response = sysadmin.post("/admin/workflow/behaviour", data=form)
    assert response.status_code == 400
    assert response.content_type.startswith("text/html")
    assert "did not come from this site" in response.text
    assert stored(db) == before


def test_the_login_form_needs_its_csrf_token_too(app: Flask, db: Database) -> None:
    make_admin(db, "sysadmin")
    response = app.test_client().post(
        "/admin/login", data={"username": "sysadmin", "password": PASSWORD}
    )
    assert response.status_code == 400


def test_a_tenant_admin_manages_its_own_tenant_only(
    app: Flask, db: Database, policy_engine: PolicyEngine
) -> None:
    with db.write() as conn:
        policy_changes.create_tenant(conn, "north", default_cells(), actor="test")
    make_admin(db, "north_admin", tenant="north")
    client = app.test_client()
    log_in(client, "north_admin")
    assert client.get("/admin/").headers["Location"] == "/admin/workflow/behaviour?tenant=north"
    assert "Tenant <strong>north</strong>" in client.get("/admin/workflow/behaviour").text
    before = stored(db)
    refused = client.get("/admin/workflow/behaviour?tenant=default")
    assert refused.status_code == 403 and "north" in refused.text
    assert client.get("/admin/audit?tenant=default").status_code == 403
    form = behaviour_form(client, "north") | {"tenant": "default", "step": "save"}
    form["view-organisation_approval-parent"] = "on"
    assert client.post("/admin/workflow/behaviour", data=form).status_code == 403
    assert stored(db) == before


def test_an_all_tenant_admin_picks_the_tenant(
    sysadmin: FlaskClient, db: Database, policy_engine: PolicyEngine
) -> None:
    with db.write() as conn:
        policy_changes.create_tenant(conn, "north", default_cells(), actor="test")
    assert sysadmin.get("/admin/").headers["Location"] == "/admin/workflow/behaviour"
    assert sysadmin.get("/admin/workflow/behaviour").headers["Location"] == "/admin/tenants"
    picker = sysadmin.get("/admin/tenants").text
    assert 'href="/admin/?tenant=default"' in picker and 'href="/admin/?tenant=north"' in picker
    assert sysadmin.get("/admin/workflow/behaviour?tenant=south").status_code == 404


# -- the Workflow page -----------------------------------------------------------------------------


def test_the_page_shows_each_phase_with_labelled_controls_version_and_last_editor(
    sysadmin: FlaskClient,
) -> None:
    page = sysadmin.get("/admin/workflow/assessment?tenant=default").text
    assert 'aria-current="page">Assessment</a>' in page
    assert "policy version <strong>1</strong>" in page and "by <strong>test</strong>" in page
    for phase in ("course_registration", "organisation_approval", "completed"):
        assert f'<fieldset id="phase-{phase}"' in page
    assert "The teacher may still edit it." in page
    assert "The teacher submits assessments." in page
    boxes = re.findall(r'<input type="checkbox" id="([^"]+)" name="\1"', page)
    assert len(boxes) == 3 * (3 + 3) + 2 * 3, "view and edit per phase, reopen after the first"
    assert all(f'<label for="{box}">' in page for box in boxes)
    assert page.count("<select") == 2, "no responsible select on the final phase"
    fields = form_fields(page)
    assert fields["responsible-course_registration"] == "course_teacher"
    assert [f for f in fields if f.startswith("reopen-")] == [
        "reopen-organisation_approval-headteacher",
        "reopen-completed-headteacher",
    ]
    first = page.split('id="phase-course_registration"')[1].split('id="phase-')[0]
    assert "reopen-course_registration" not in first
    assert "None: the first phase. There is no earlier phase to go back to." in first
    assert "<legend>Staff who may reopen (move back to the previous phase)</legend>" in page


def test_review_lists_each_change_and_the_assessments_it_affects_without_saving(
    sysadmin: FlaskClient, db: Database, api: Api
) -> None:
    for n in range(3):
        assert api.post("/assessments", {"id": f"b{n}", "area": "behaviour"}).status_code == 201
    for n in range(2):
        moved = api.post(f"/assessments/b{n}/advance", {"role": "mentor", "actor": "ms_smith"})
        assert moved.status_code == 200
    before = stored(db)
    form = behaviour_form(sysadmin) | {"view-organisation_approval-parent": "on"}
    form.pop("view-completed-learner")
    review = sysadmin.post("/admin/workflow/behaviour", data=form)
    assert review.status_code == 200
    text = re.sub(r"\s+", " ", review.text)
    assert "Parents will be able to see Behaviour in the Organisation approval phase" in text
    assert "Learners will no longer be able to see Behaviour in the phase" in text
    assert '<td class="gains"> gain sight of 2 </td>' in text
    assert '<td class="loses"> lose sight of 0 </td>' in text
    assert stored(db) == before
    back = form_fields(review.text, "confirm") | {"step": "back"}
    again = sysadmin.post("/admin/workflow/behaviour", data=back)
    assert form_fields(again.text)["view-organisation_approval-parent"] == "on", "draft kept"


def test_saving_replaces_the_area_bumps_the_version_audits_and_decisions_follow(
    sysadmin: FlaskClient, db: Database, api: Api
) -> None:
    assert not authorize(api, "parent", "organisation_approval")
    form = behaviour_form(sysadmin) | {"view-organisation_approval-parent": "on"}
    form["responsible-group_registration"] = "headteacher"
    review = sysadmin.post("/admin/workflow/behaviour", data=form)
    saved = sysadmin.post(
        "/admin/workflow/behaviour", data=form_fields(review.text, "confirm") | {"step": "save"}
    )
    assert saved.status_code == 303
    assert saved.headers["Location"] == "/admin/workflow/behaviour?tenant=default"
    page = sysadmin.get(saved.headers["Location"]).text
    assert "Saved 3 changes: the policy is now version 2." in page
    assert "last changed by <strong>sysadmin</strong>" in page
    assert authorize(api, "parent", "organisation_approval")
    assert authorize(api, "headteacher", "group_registration", "advance")
    assert not authorize(api, "mentor", "group_registration", "advance")
    assert authorize(api, "headteacher", "completed", "reopen"), "rows not on the form are kept"
    with db.read() as conn:
        audit = conn.execute(select(PolicyChange)).all()
    assert {(a.role, a.phase, a.action, a.before, a.after, a.actor, a.version) for a in audit} == {
        ("parent", "organisation_approval", "view", False, True, "sysadmin", 2),
        ("mentor", "group_registration", "advance", True, False, "sysadmin", 2),
        ("headteacher", "group_registration", "advance", False, True, "sysadmin", 2),
    }


@pytest.mark.parametrize("step", ["review", "save"])
def test_an_invalid_matrix_is_refused_on_its_row_and_nothing_is_saved(
    sysadmin: FlaskClient, db: Database, step: str
) -> None:
    before = stored(db)
    form = behaviour_form(sysadmin) | {"responsible-organisation_approval": "", "step": step}
    form["edit-completed-parent"] = "on"
    response = sysadmin.post("/admin/workflow/behaviour", data=form)
    assert response.status_code == 400
    assert "Not saved: 2 problems to fix" in response.text
    row = response.text.split('id="phase-organisation_approval"')[1].split("</fieldset>")[0]
    assert "Choose the role responsible for advancing this phase." in row
    final_row = response.text.split('id="phase-completed"')[1]
    assert "Parents can only see: they cannot edit, advance or reopen." in final_row
    assert stored(db) == before


def test_ticking_and_unticking_reopen_boxes_reviews_saves_and_authorize_follows(
    sysadmin: FlaskClient, db: Database, api: Api
) -> None:
    form = behaviour_form(sysadmin) | {"reopen-completed-mentor": "on"}
    form.pop("reopen-organisation_approval-headteacher")
    review = sysadmin.post("/admin/workflow/behaviour", data=form)
    text = re.sub(r"\s+", " ", review.text)
    assert (
        "Headteachers will no longer be able to reopen Behaviour from the Organisation approval "
        "phase (back to the Group registration phase)" in text
    )
    assert (
        "Mentors will be able to reopen Behaviour from the phase “Term behaviour assessment "
        "completed” (back to the Organisation approval phase)" in text
    )
    saved = sysadmin.post(
        "/admin/workflow/behaviour", data=form_fields(review.text, "confirm") | {"step": "save"}
    )
    assert saved.status_code == 303
    assert authorize(api, "mentor", "completed", "reopen")
    assert not authorize(api, "headteacher", "organisation_approval", "reopen")
    assert authorize(api, "headteacher", "completed", "reopen")
    page = form_fields(sysadmin.get(saved.headers["Location"]).text)
    assert page["reopen-completed-mentor"] == "on"
    assert "reopen-organisation_approval-headteacher" not in page


@pytest.mark.parametrize(
    "field, phase, message",
    [
        (
            "reopen-group_registration-headteacher",
            "group_registration",
            "The first phase cannot be reopened: there is no phase before it.",
        ),
        (
            "reopen-completed-parent",
            "completed",
            "Parents can only see: they cannot edit, advance or reopen.",
        ),
    ],
)
def test_reopen_on_the_first_phase_or_for_an_audience_is_refused_on_its_row(
    sysadmin: FlaskClient, db: Database, field: str, phase: str, message: str
) -> None:
    before = stored(db)
    form = behaviour_form(sysadmin) | {field: "on", "step": "save"}
    response = sysadmin.post("/admin/workflow/behaviour", data=form)
    assert response.status_code == 400
    assert "Not saved: 1 problem to fix" in response.text
    row = response.text.split(f'id="phase-{phase}"')[1].split('<div class="cells">')[0]
    assert message in row
    assert stored(db) == before


def test_a_form_loaded_before_another_admins_save_is_refused_and_saves_nothing(
    app: Flask, sysadmin: FlaskClient, db: Database, api: Api
) -> None:
    mine = behaviour_form(sysadmin) | {"view-group_registration-learner": "on"}
    my_review = sysadmin.post("/admin/workflow/behaviour", data=mine)
    other = app.test_client()
    make_admin(db, "deputy")
    log_in(other, "deputy")
    theirs = behaviour_form(other) | {"view-organisation_approval-parent": "on", "step": "save"}
    assert other.post("/admin/workflow/behaviour", data=theirs).status_code == 303
    after_theirs = stored(db)
    refused = sysadmin.post(
        "/admin/workflow/behaviour", data=form_fields(my_review.text, "confirm") | {"step": "save"}
    )
    assert refused.status_code == 409
    text = re.sub(r"\s+", " ", refused.text)
    assert "Not saved: the policy changed while you were editing" in text
    assert "<strong>deputy</strong> saved version 2" in text
    assert "Learners will be able to see Behaviour in the Group registration phase" in text
    assert stored(db) == after_theirs
    assert not authorize(api, "learner", "group_registration")
    assert form_fields(refused.text)["version"] == "2", "the page now shows the current version"


def test_reviewing_an_unchanged_form_says_there_is_nothing_to_review(
    sysadmin: FlaskClient, db: Database
) -> None:
    before = stored(db)
    response = sysadmin.post("/admin/workflow/behaviour", data=behaviour_form(sysadmin))
    assert "Nothing to review" in response.text
    assert stored(db) == before


# -- a stale form: your changes against what you loaded, theirs since, and yours on top ----------

LEARNER_SEES_REGISTRATION = ("learner", "behaviour", "group_registration", "view")
EXTERNAL_SEES_REGISTRATION = ("external_system", "behaviour", "group_registration", "view")


@pytest.fixture
def deputy(app: Flask, db: Database) -> FlaskClient:
    """A second admin of every tenant, in a browser session of its own."""
    client = app.test_client()
    make_admin(db, "deputy")
    assert log_in(client, "deputy").status_code == 303
    return client


def save_form(client: FlaskClient, **fields: str | None) -> None:
    """Load the behaviour page, set (a value) or clear (None) fields, review and save it."""
    form = behaviour_form(client)
    for name, value in fields.items():
        if value is None:
            form.pop(name, None)
        else:
            form[name] = value
    review = client.post("/admin/workflow/behaviour", data=form)
    saved = client.post(
        "/admin/workflow/behaviour", data=form_fields(review.text, "confirm") | {"step": "save"}
    )
    assert saved.status_code == 303


def items(html: str, list_id: str) -> list[str]:
    """The plain text of each item of the page's list with this id ([] when there is none)."""
    found = re.search(rf'<ul[^>]* id="{list_id}"[^>]*>(.*?)</ul>', html, re.S)
    if found is None:
        return []
    texts = re.findall(r"<li[^>]*>(.*?)</li>", found.group(1), re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", t)).strip() for t in texts]


def loaded_for(client: FlaskClient, form: dict[str, str], step: str) -> dict[str, str]:
    """What a browser will post later from a form loaded now: the form itself (to review it),
    or its review page's confirmation (to save it)."""
    if step == "review":
        return form
    review = client.post("/admin/workflow/behaviour", data=form)
    assert review.status_code == 200
    return form_fields(review.text, "confirm") | {"step": "save"}


@pytest.mark.parametrize("step", ["review", "save"])
def test_a_stale_form_lists_only_your_changes_and_applies_them_on_top_of_theirs(
    sysadmin: FlaskClient, deputy: FlaskClient, db: Database, api: Api, step: str
) -> None:
    mine = behaviour_form(sysadmin) | {"view-group_registration-external_system": "on"}
    mine = loaded_for(sysadmin, mine, step)
    save_form(deputy, **{"view-group_registration-learner": "on"})
    after_theirs = stored(db)
    refused = sysadmin.post("/admin/workflow/behaviour", data=mine)
    assert refused.status_code == 409 and stored(db) == after_theirs
    assert "no longer" not in refused.text, "nothing of theirs is offered for undoing"
    assert items(refused.text, "yours") == [
        "External systems will be able to see Behaviour in the Group registration phase"
    ], "the diff is against the version the form was loaded at, not against theirs"
    assert re.fullmatch(
        r"deputy, version 2 on \S+ \S+ UTC: Learners were allowed to see Behaviour in the Group "
        r"registration phase",
        items(refused.text, "theirs")[0],
    )
    assert items(refused.text, "conflicts") == []
    replayed = form_fields(refused.text, "replay")
    assert replayed["version"] == "2"
    back = replayed | {"step": "back"}
    edit = form_fields(sysadmin.post("/admin/workflow/behaviour", data=back).text)
    assert edit["view-group_registration-learner"] == "on", "edit yours on top of theirs"
    assert edit["view-group_registration-external_system"] == "on"
    assert edit["version"] == "2" and stored(db) == after_theirs
    review = sysadmin.post("/admin/workflow/behaviour", data=replayed | {"step": "review"})
    assert review.status_code == 200
    assert items(review.text, "changes") == [
        "External systems will be able to see Behaviour in the Group registration phase"
    ]
    saved = sysadmin.post(
        "/admin/workflow/behaviour", data=form_fields(review.text, "confirm") | {"step": "save"}
    )
    assert saved.status_code == 303
    assert authorize(api, "learner", "group_registration"), "their tick is kept"
    assert authorize(api, "external_system", "group_registration")
    with db.read() as conn:
        last = conn.execute(select(PolicyChange).where(PolicyChange.version == 3)).all()
    assert [(a.role, a.phase, a.actor) for a in last] == [
        ("external_system", "group_registration", "sysadmin")
    ]


def test_a_stale_form_says_which_of_your_changes_are_already_in_force_or_conflict(
    sysadmin: FlaskClient, deputy: FlaskClient, db: Database, api: Api
) -> None:
    mine = behaviour_form(sysadmin) | {
        "view-group_registration-parent": "on",
        "responsible-organisation_approval": "course_teacher",
    }
    save_form(
        deputy,
        **{"view-group_registration-parent": "on", "responsible-organisation_approval": "mentor"},
    )
    refused = sysadmin.post("/admin/workflow/behaviour", data=mine)
    assert refused.status_code == 409
    assert items(refused.text, "conflicts") == [
        "Already in force: Parents will be able to see Behaviour in the Group registration "
        "phase. deputy made the same change in version 2.",
        "Already in force: Headteachers will no longer be responsible for advancing Behaviour "
        "from the Organisation approval phase. deputy made the same change in version 2.",
        "Conflict: Course teachers will be responsible for advancing Behaviour from the "
        "Organisation approval phase, but deputy changed it meanwhile, in version 2: Mentors "
        "were made responsible for advancing Behaviour from the Organisation approval phase. "
        "Applying yours reverses that.",
    ]
    replayed = form_fields(refused.text, "replay") | {"step": "review"}
    review = sysadmin.post("/admin/workflow/behaviour", data=replayed)
    assert items(review.text, "changes") == [
        "Mentors will no longer be responsible for advancing Behaviour from the Organisation "
        "approval phase",
        "Course teachers will be able to see Behaviour in the Organisation approval phase",
        "Course teachers will be responsible for advancing Behaviour from the Organisation "
        "approval phase",
    ], "yours replaces their choice, in plain sight, and nothing is already in force twice"
    saved = sysadmin.post(
        "/admin/workflow/behaviour", data=form_fields(review.text, "confirm") | {"step": "save"}
    )
    assert saved.status_code == 303 and stored(db)[0] == 3
    assert authorize(api, "course_teacher", "organisation_approval", "advance")
    assert not authorize(api, "mentor", "organisation_approval", "advance")
    assert authorize(api, "parent", "group_registration")


def test_a_stale_form_whose_changes_are_all_in_force_offers_nothing_to_apply(
    sysadmin: FlaskClient, deputy: FlaskClient
) -> None:
    mine = behaviour_form(sysadmin) | {"view-group_registration-parent": "on"}
    save_form(deputy, **{"view-group_registration-parent": "on"})
    refused = re.sub(r"\s+", " ", sysadmin.post("/admin/workflow/behaviour", data=mine).text)
    assert "Nothing left to apply: your changes are already in force." in refused
    assert form_fields(refused, "replay") == {}


def test_a_stale_form_warns_when_yours_reverses_a_cell_they_changed_and_set_back(
    sysadmin: FlaskClient, deputy: FlaskClient
) -> None:
    mine = behaviour_form(sysadmin) | {"view-group_registration-learner": "on"}
    save_form(deputy, **{"view-group_registration-learner": "on"})
    save_form(deputy, **{"view-group_registration-learner": None})
    refused = sysadmin.post("/admin/workflow/behaviour", data=mine)
    assert items(refused.text, "conflicts") == [
        "Conflict: Learners will be able to see Behaviour in the Group registration phase, but "
        "deputy changed it meanwhile, in version 3: Learners were no longer allowed to see "
        "Behaviour in the Group registration phase. Applying yours reverses that."
    ]
    assert len(items(refused.text, "theirs")) == 2
    assert form_fields(refused.text, "replay")["view-group_registration-learner"] == "on"


def test_a_stale_form_of_an_area_nobody_else_changed_says_so(
    sysadmin: FlaskClient, deputy: FlaskClient
) -> None:
    mine = behaviour_form(sysadmin) | {"view-group_registration-learner": "on"}
    other = form_fields(deputy.get("/admin/workflow/assessment?tenant=default").text)
    other["view-course_registration-learner"] = "on"
    review = deputy.post("/admin/workflow/assessment", data=other)
    deputy.post(
        "/admin/workflow/assessment", data=form_fields(review.text, "confirm") | {"step": "save"}
    )
    refused = re.sub(r"\s+", " ", sysadmin.post("/admin/workflow/behaviour", data=mine).text)
    assert "Nothing in Behaviour." in refused
    assert "Other areas: 1 change, listed in" in refused
    assert items(refused, "yours") == [
        "Learners will be able to see Behaviour in the Group registration phase"
    ]


@pytest.mark.parametrize(
    "version, why",
    [
        ("7", "version 7 is not one this policy has had (it is at version 2)"),
        ("0", "version 0 is not one this policy has had (it is at version 2)"),
        ("-99999999999999999999999", "is not one this policy has had"),
        ("1", "the audit trail has no record of version 2, so version 1 cannot be rebuilt"),
    ],
)
def test_a_stale_form_whose_version_cannot_be_rebuilt_says_why_and_offers_no_replay(
    sysadmin: FlaskClient, db: Database, policy_engine: PolicyEngine, version: str, why: str
) -> None:
    mine = behaviour_form(sysadmin) | {"view-group_registration-learner": "on", "version": version}
    with db.write() as conn:  # a version the audit never saw, as history from before the audit
        rows.bump(conn, "default", 1, "legacy")
        rows.insert_cells(conn, "default", {EXTERNAL_SEES_REGISTRATION})
    policy_engine.forget("default")
    before = stored(db)
    refused = sysadmin.post("/admin/workflow/behaviour", data=mine)
    assert refused.status_code == 409 and stored(db) == before
    text = re.sub(r"\s+", " ", refused.text)
    assert "Your changes cannot be told apart from theirs: " in text and why in text
    assert "Some may undo someone else's change rather than make yours" in text
    assert "External systems will no longer be able to see" in text, "flagged, not hidden"
    assert form_fields(refused.text, "replay") == {}, "nothing to apply blindly"
    assert form_fields(refused.text)["version"] == "2"


# -- rebuilding an older version from the audit trail (pure) ---------------------------------------

AT = utcnow()


def edit(version: int, cell: Cell, after: bool, actor: str = "deputy") -> PolicyEdit:
    return PolicyEdit(version, actor, AT, CellChange(cell, not after, after))


PARENT_SEES_REGISTRATION = ("parent", "behaviour", "group_registration", "view")
LEARNER_SEES_COURSES = ("learner", "assessment", "course_registration", "view")
TRAIL = [  # version 2 ticks two cells, 3 one in another area, 4 unticks the first again
    edit(2, LEARNER_SEES_REGISTRATION, True),
    edit(2, PARENT_SEES_REGISTRATION, True),
    edit(3, LEARNER_SEES_COURSES, True),
    edit(4, LEARNER_SEES_REGISTRATION, False, actor="sysadmin"),
]
AT_4 = frozenset({PARENT_SEES_APPROVAL, PARENT_SEES_REGISTRATION})


@pytest.mark.parametrize(
    "version, cells",
    [
        (4, AT_4),
        (3, AT_4 | {LEARNER_SEES_REGISTRATION}),
        (2, AT_4 | {LEARNER_SEES_REGISTRATION}),
        (1, frozenset({PARENT_SEES_APPROVAL})),
    ],
)
def test_an_areas_older_version_is_rebuilt_by_undoing_the_audit_trail(
    version: int, cells: frozenset[Cell]
) -> None:
    assert policy_at(AT_4, 4, TRAIL, version, area="behaviour") == cells


def test_the_whole_tenant_is_rebuilt_without_an_area() -> None:
    now = AT_4 | {LEARNER_SEES_COURSES}
    assert policy_at(now, 4, TRAIL, 2) == AT_4 | {LEARNER_SEES_REGISTRATION}
    assert policy_at(now, 4, TRAIL, 1) == {PARENT_SEES_APPROVAL}


@pytest.mark.parametrize(
    "now, trail, version, why",
    [
        (AT_4, TRAIL, 5, "version 5 is not one this policy has had (it is at version 4)"),
        (AT_4, TRAIL, 0, "version 0 is not one"),
        (AT_4, TRAIL, -3, "version -3 is not one"),
        (AT_4, TRAIL[3:], 1, "no record of version 2 and 1 more, so version 1 cannot be rebuilt"),
        (AT_4, TRAIL[:2] + TRAIL[3:], 2, "no record of version 3, so version 2 cannot be"),
        (AT_4 - {PARENT_SEES_REGISTRATION}, TRAIL, 1, "not match the audit trail of version 2"),
        (AT_4, [*TRAIL, edit(5, PARENT_SEES_APPROVAL, True)], 2, "a version newer than version 4"),
    ],
)
def test_a_version_the_trail_cannot_rebuild_is_refused_with_the_reason(
    now: frozenset[Cell], trail: list[PolicyEdit], version: int, why: str
) -> None:
    with pytest.raises(HistoryGap, match=re.escape(why)):
        policy_at(now, 4, trail, version, area="behaviour")


# -- audit -----------------------------------------------------------------------------------------


def test_the_audit_page_lists_policy_changes_and_transitions_newest_first(
    sysadmin: FlaskClient, api: Api
) -> None:
    api.post("/assessments", {"id": "b1", "area": "behaviour"})
    api.post("/assessments/b1/advance", {"role": "mentor", "actor": "ms_smith"})
    form = behaviour_form(sysadmin) | {"view-organisation_approval-parent": "on", "step": "save"}
    sysadmin.post("/admin/workflow/behaviour", data=form)
    page = re.sub(r"\s+", " ", sysadmin.get("/admin/audit?tenant=default").text)
    policy = page.index("Parents were allowed to see Behaviour in the Organisation approval phase")
    move = page.index(
        "Advanced Behaviour b1 from Group registration phase to "
        "Organisation approval phase as Mentor"
    )
    assert policy < move
    by_person = sysadmin.get("/admin/audit?tenant=default&person=ms_smith").text
    assert "Behaviour b1" in by_person and "Parents were allowed" not in by_person
    by_area = sysadmin.get("/admin/audit?tenant=default&area=assessment").text
    assert "Nothing recorded for these filters." in by_area


def test_the_audit_page_shows_the_key_beside_the_actor_of_a_transition(
    sysadmin: FlaskClient, api: Api, db: Database
) -> None:
    with db.write() as conn:
        intern = keys.create(conn, "intern laptop", "default")
    api.post("/assessments", {"id": "b1", "area": "behaviour"})
    lookalike = "\u0430dmin"  # a Cyrillic а: the same look as "admin", and another key
    moved = api.post("/assessments/b1/advance", {"role": "mentor", "actor": lookalike}, intern)
    assert moved.status_code == 200
    page = re.sub(r"\s+", " ", sysadmin.get("/admin/audit?tenant=default").text)
    prefix = intern.split("_")[1]  # as `keys list` shows it: names are unique only while active
    assert (
        f'<bdi>{lookalike}</bdi></a> <span class="key">with key <bdi>intern laptop</bdi> '
        f"({prefix})</span>" in page
    )
    form = behaviour_form(sysadmin) | {"view-organisation_approval-parent": "on", "step": "save"}
    sysadmin.post("/admin/workflow/behaviour", data=form)
    policy_row = sysadmin.get("/admin/audit?tenant=default&person=sysadmin").text
    assert "Parents were allowed" in policy_row and 'class="key"' not in policy_row


def test_the_audit_page_shows_a_reopen_with_its_reason(sysadmin: FlaskClient, api: Api) -> None:
    api.post("/assessments", {"id": "b1", "area": "behaviour"})
    api.post("/assessments/b1/advance", {"role": "mentor", "actor": "ms_smith"})
    body = {"role": "headteacher", "actor": "mr_jones", "reason": "Marks <missing>"}
    assert api.post("/assessments/b1/reopen", body).status_code == 200
    page = re.sub(r"\s+", " ", sysadmin.get("/admin/audit?tenant=default&person=mr_jones").text)
    assert (
        "Reopened Behaviour b1 from Organisation approval phase back to Group "
        "registration phase as Headteacher, giving the reason “<bdi>Marks &lt;missing&gt;</bdi>”"
        in page
    )


def test_the_audit_page_renders_old_rows_with_control_or_bidi_characters_inert(
    sysadmin: FlaskClient, api: Api, db: Database
) -> None:
    """Rows written before the free-text rule (the API and the CLI refuse such text now) show
    each refused character as a U+XXXX token, never raw, and each free text isolated in <bdi>."""
    api.post("/assessments", {"id": "b1", "area": "behaviour"})
    actor, reason, key = "ms_\u202esmith", "done\u2066 \u202eenod", "lap\x1btop"
    with db.write() as conn:
        conn.execute(
            insert(Transition).values(
                tenant="default",
                assessment_id="b1",
                from_phase="organisation_approval",
                to_phase="group_registration",
                role="headteacher",
                actor=actor,
                policy_version=1,
                action=REOPEN,
                reason=reason,
                key_name=key,
            )
        )
        conn.execute(
            insert(PolicyChange).values(
                tenant="default",
                version=1,
                actor="ops\u200f",
                role="parent",
                area="behaviour",
                phase="group_registration",
                action="view",
                before=False,
                after=True,
            )
        )
    page = re.sub(r"\s+", " ", sysadmin.get("/admin/audit?tenant=default").text)
    token = '<span class="codepoint">U+{}</span>'.format
    assert (
        f'title="Only what ms_U+202Esmith did"><bdi>ms_{token("202E")}smith</bdi></a> '
        f'<span class="key">with key <bdi>lap{token("001B")}top</bdi></span>' in page
    )
    assert f"giving the reason “<bdi>done{token('2066')} {token('202E')}enod</bdi>”" in page
    assert f"<bdi>ops{token('200F')}</bdi>" in page
    assert not {"\u202e", "\u2066", "\u200f", "\x1b"} & set(page)
    # The actor's link filters by the text as stored; only the filter's own box holds it raw.
    link = re.search(r'href="([^"]*person=ms_[^"]*)"', page)
    assert link is not None
    by_actor = sysadmin.get(link.group(1).replace("&amp;", "&")).text
    assert f"by <bdi>ms_{token('202E')}smith</bdi></caption>" in by_actor
    assert by_actor.count("\u202e") == 1 and f'value="{actor}"' in by_actor


def test_the_audit_page_names_an_assessment_by_its_area_without_doubling_a_word(
    sysadmin: FlaskClient, api: Api
) -> None:
    api.post("/assessments", {"id": "a1", "area": "assessment"})
    moved = api.post("/assessments/a1/advance", {"role": "course_teacher", "actor": "ms_lee"})
    assert moved.status_code == 200
    page = re.sub(r"\s+", " ", sysadmin.get("/admin/audit?tenant=default&person=ms_lee").text)
    assert (
        "Advanced Assessment a1 from Course registration phase to Organisation approval phase "
        "as Course teacher" in page
    )
    assert "Assessment assessment" not in page


def test_the_audit_page_is_paginated(
    sysadmin: FlaskClient, db: Database, policy_engine: PolicyEngine
) -> None:
    cells = default_cells()
    with db.write() as conn:  # every cell removed, then added back: two audit rows per cell
        policy_changes.save(conn, policy_engine, "default", [], actor="bulk")
        policy_changes.save(conn, policy_engine, "default", cells, actor="bulk")
    assert PAGE_SIZE < 2 * len(cells) <= 2 * PAGE_SIZE
    first = sysadmin.get("/admin/audit?tenant=default&person=bulk").text
    assert first.count("<tr class=") == PAGE_SIZE
    assert 'rel="next"' in first and 'rel="prev"' not in first
    second = sysadmin.get("/admin/audit?tenant=default&person=bulk&page=2").text
    assert second.count("<tr class=") == 2 * len(cells) - PAGE_SIZE
    assert 'rel="prev"' in second and 'rel="next"' not in second


# -- HTML errors and headers on admin pages only ---------------------------------------------------


def test_admin_pages_forbid_framing_and_scripts(app: Flask) -> None:
    headers = app.test_client().get("/admin/login").headers
    policy = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    assert "script-src" not in policy, "no script may run at all"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"


def test_admin_errors_are_pages_and_api_errors_stay_json(sysadmin: FlaskClient, app: Flask) -> None:
    missing = sysadmin.get("/admin/workflow/attendance?tenant=default")
    assert missing.status_code == 404 and missing.content_type.startswith("text/html")
    assert "There is no workflow area" in missing.text
    assert sysadmin.get("/admin/no/such/page").content_type.startswith("text/html")
    api_missing = app.test_client().get("/no/such/page")
    assert api_missing.status_code == 404
    assert api_missing.json == {
        "error": {"code": "not_found", "message": api_missing.json["error"]["message"]}
    }
    assert "Content-Security-Policy" not in api_missing.headers


# -- the session signing key -----------------------------------------------------------------------


def test_without_a_configured_key_one_is_kept_beside_the_sqlite_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    config = {"DATABASE_URL": url, "SECRET_KEY": ""}
    first, second = create_app(config), create_app(config)
    for made in (first, second):
        made.extensions["workflow_authz.db"].dispose()
    assert first.secret_key == second.secret_key == (tmp_path / "secret_key").read_text()
    assert len(first.secret_key or "") == 64
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0, "readable by its owner only"


def test_other_stores_need_the_key_configured() -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    with pytest.raises(ConfigError, match="WORKFLOW_AUTHZ_SECRET_KEY"):
        create_app({"DATABASE_URL": url, "SECRET_KEY": ""})
    configured = create_app({"DATABASE_URL": url, "SECRET_KEY": "k" * 64})
    configured.extensions["workflow_authz.db"].dispose()
    assert configured.secret_key == "k" * 64


def test_a_policy_save_and_a_stale_one_each_log_one_line_with_an_id(
    sysadmin: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Every write goes to the decision log: a save with the version it made, a stale one
    refused with 409; the line is written once the outcome is known."""
    caplog.set_level(logging.INFO, logger="workflow_authz.decisions")
    form = behaviour_form(sysadmin)
    saved = form | {"view-organisation_approval-parent": "on", "step": "save"}
    sysadmin.post("/admin/workflow/behaviour", data=saved)
    stale = form | {"view-organisation_approval-learner": "on", "step": "save"}
    sysadmin.post("/admin/workflow/behaviour", data=stale)
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "workflow_authz.decisions"
    ]
    assert [
        {k: line[k] for k in ("event", "actor", "area", "allowed", "status")} for line in lines
    ] == [
        dict(event="policy", actor="sysadmin", area="behaviour", allowed=True, status=None),
        dict(event="policy", actor="sysadmin", area="behaviour", allowed=False, status=409),
    ]
    assert lines[0]["policy_version"] == int(form["version"]) + 1 and lines[0]["changes"] == 1
    assert len({line["decision_id"] for line in lines}) == 2
