"""Malformed input is a 4xx, never a 5xx, on SQLite and PostgreSQL (issue 11, item 5): deep
nesting, numbers in other scripts' digits or beyond 64 bits (query strings, cursors, page
tokens, admin page numbers and form versions), NUL where the store would refuse it (keys,
tenants, names, filters, page tokens), and a login's `next` holding CR/LF or leading off-site.
Each case was a 500 or a 503 before its fix; tests/test_fuzz.py looks for the ones not listed."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import pages
from service.limits import MAX_DEPTH, MAX_NUMBER, MAX_OFFSET, storable, whole_number
from service.shapes import TOO_DEEP, too_deep
from tests.conftest import Api
from tests.test_admin import csrf_token, log_in, make_admin

HUGE = "9" * 30
"""A whole number no store's integer holds."""


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _refused(response: Any, status: int = 400) -> None:
    """A refusal with the status given, never an outage; the JSON API's names the reason."""
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    if response.is_json:
        assert response.get_json()["error"]["code"] != "unavailable"


# -- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("0", 0),
        ("12", 12),
        (str(MAX_NUMBER), MAX_NUMBER),
        (str(MAX_NUMBER + 1), None),
        ("١٢", None),  # Arabic-Indic digits, which int() takes
        ("+1", None),
        (" 1", None),
        ("1_0", None),
        ("", None),
        (HUGE, None),
    ],
)
def test_a_whole_number_is_ascii_digits_a_store_holds(text: str, number: int | None) -> None:
    assert whole_number(text) == number


def test_what_a_store_cannot_hold_as_text() -> None:
    assert storable("Élodie ✓") and not storable("a\x00b") and not storable("\ud800")


@pytest.mark.parametrize(
    ("body", "deep"),
    [
        (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, False),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), True),
        (b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), True),
        (b'{"a":"' + b"[" * 100 + b'"}', False),  # brackets in a string nest nothing
        (b'{"a":"\\"' + b"[" * 100 + b'"}', False),  # nor after an escaped quote
        (b"[{}]" * 1000, False),  # many brackets, shallow
    ],
)
def test_nesting_depth_is_measured_outside_strings(body: bytes, deep: bool) -> None:
    assert too_deep(body) is deep


# -- the JSON API ----------------------------------------------------------------------------

DEEP = b'{"role":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize("path", ["/authorize", "/access/v1/evaluation", "/permissions"])
def test_deep_nesting_is_refused_after_the_key(api: Api, path: str) -> None:
    sent = dict(data=DEEP, content_type="application/json")
    assert api.client.post(path, **sent).status_code == 401  # no key: never parsed
    response = api.client.post(path, **sent, headers=api._auth(None))
    _refused(response)
    assert response.get_json()["error"]["message"] == TOO_DEEP


def test_a_context_nested_within_the_limit_is_answered(api: Api) -> None:
    context = b'{"a":' * (MAX_DEPTH - 2) + b"1" + b"}" * (MAX_DEPTH - 2)
    body = (
        b'{"subject":{"type":"role","id":"parent"},"action":{"name":"view"},'
        b'"resource":{"type":"phase","id":"assessment/completed"},"context":' + context + b"}"
    )
    response = api.client.post(
        "/access/v1/evaluation", data=body, content_type="application/json", headers=api._auth(None)
    )
    assert response.status_code == 200 and response.get_json()["decision"] is True


@pytest.mark.parametrize("limit", ["١٢", "+5", " 5", "5_0", HUGE, "9" * 5000])
def test_a_feed_limit_is_ascii_digits_in_range(api: Api, limit: str) -> None:
    response = api.get(f"/events?limit={limit}")
    _refused(response)
    assert response.get_json()["error"]["field"] == "limit"


@pytest.mark.parametrize("seq", [HUGE, str(MAX_NUMBER + 1), "١٢", "+1"])
def test_a_cursor_holds_a_number_a_store_holds(api: Api, seq: str) -> None:
    response = api.get(f"/events?after={_b64(f'v1:default:{seq}')}")
    _refused(response)
    assert response.get_json()["error"]["field"] == "after"


def test_the_largest_cursor_a_store_holds_is_an_empty_page(api: Api) -> None:
    response = api.get(f"/events?after={_b64(f'v1:default:{MAX_NUMBER}')}")
    assert response.status_code == 200 and response.get_json()["events"] == []


def test_a_key_whose_prefix_holds_nul_is_not_valid(api: Api) -> None:
    response = api.get("/events", key="wa_ab\x00cd_secret")
    _refused(response, 401)


def _search_token(parameters: Any, limit: str, after: str) -> str:
    """A token made the way pages.py makes one, with any limit and start."""
    return _b64(f"v1:{pages._digest(parameters)}:{limit}:{after}")


SEARCH = {
    "subject": {"type": "role", "id": "parent"},
    "action": {"name": "view"},
    "resource": {"type": "assessment"},
}


@pytest.mark.parametrize(("limit", "after"), [("2", "a\x00"), ("١", "a1"), (HUGE, "a1")])
def test_a_page_token_holds_what_a_search_gave(api: Api, limit: str, after: str) -> None:
    parameters = ["resource", "default", SEARCH]
    token = _search_token(parameters, limit, after)
    response = api.post("/access/v1/search/resource", {**SEARCH, "page": {"token": token}})
    _refused(response)
    assert response.get_json()["error"]["field"] == "page.token"


# -- the admin pages -------------------------------------------------------------------------


@pytest.fixture
def signed_in(app: Flask, db: Any) -> FlaskClient:
    client = app.test_client()
    make_admin(db, "root")
    assert log_in(client, "root").status_code == 303
    return client


@pytest.mark.parametrize("page", [HUGE, str(MAX_OFFSET), "١٢", "0", "-1", "x"])
def test_an_audit_page_number_is_ascii_digits_in_range(signed_in: FlaskClient, page: str) -> None:
    _refused(signed_in.get(f"/admin/audit?tenant=default&page={page}"))


def test_the_last_audit_page_is_empty(signed_in: FlaskClient) -> None:
    from service.admin.audit import LAST_PAGE

    response = signed_in.get(f"/admin/audit?tenant=default&page={LAST_PAGE}")
    assert response.status_code == 200


def test_an_audit_person_holding_nul_is_refused(signed_in: FlaskClient) -> None:
    _refused(signed_in.get("/admin/audit?tenant=default&person=a%00b"))


@pytest.mark.parametrize(
    "path",
    ["/admin/?tenant=a%00", "/admin/audit?tenant=a%00", "/admin/workflow/behaviour?tenant=a%00"],
)
def test_a_tenant_that_is_no_identifier_is_no_tenant(signed_in: FlaskClient, path: str) -> None:
    _refused(signed_in.get(path), 404)


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"tenant": "a\x00", "version": "1"}, 404),
        ({"tenant": "default", "version": "١"}, 400),
        ({"tenant": "default", "version": "+1"}, 400),
    ],
)
def test_a_workflow_form_with_a_bad_tenant_or_version(
    signed_in: FlaskClient, fields: dict[str, str], status: int
) -> None:
    token = csrf_token(signed_in.get("/admin/workflow/behaviour?tenant=default").text)
    response = signed_in.post("/admin/workflow/behaviour", data={"csrf_token": token, **fields})
    _refused(response, status)


def test_a_username_holding_nul_is_a_wrong_login(app: Flask) -> None:
    client = app.test_client()
    token = csrf_token(client.get("/admin/login").text)
    form = {"csrf_token": token, "username": "ro\x00ot", "password": "x"}
    response = client.post("/admin/login", data=form)
    assert response.status_code == 200 and "Wrong username or password." in response.text


@pytest.mark.parametrize(
    "target",
    [
        "/admin/audit\r\nSet-Cookie: x=1",
        "/admin/audit\n",
        "/admin/\x00",
        "//evil.example/admin/",
        "/\t/evil.example/admin/",
        "https://evil.example/admin/",
        "/admin/\\evil",
        "/admin/é",
    ],
)
def test_a_next_that_could_lead_elsewhere_is_ignored(app: Flask, db: Any, target: str) -> None:
    client = app.test_client()
    make_admin(db, "root")
    token = csrf_token(client.get("/admin/login").text)
    form = {"csrf_token": token, "username": "root", "password": "correct horse battery staple"}
    response = client.post("/admin/login", data={**form, "next": target})
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/"


def test_a_next_on_this_site_is_followed(app: Flask, db: Any) -> None:
    client = app.test_client()
    make_admin(db, "root")
    token = csrf_token(client.get("/admin/login").text)
    form = {"csrf_token": token, "username": "root", "password": "correct horse battery staple"}
    response = client.post("/admin/login", data={**form, "next": "/admin/audit?tenant=default"})
    assert response.headers["Location"] == "/admin/audit?tenant=default"
