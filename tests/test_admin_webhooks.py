"""The admin's External systems page (issue 13, part 1), on SQLite and PostgreSQL: a tab beside
the workflow areas listing the tenant's webhook endpoints with the facts `webhooks list` shows
(name, URL, state and why, last delivery, last success, events not yet sent), never a secret;
a tenant admin sees its own tenant's endpoints only and is refused another tenant's page;
free text stored by the delivery loop (an error) is escaped and made inert."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from service import policy_changes
from service.cli import default_cells
from service.db import Database
from service.models import WebhookEndpoint, utcnow
from service.webhooks import endpoints
from tests.conftest import Api, complete
from tests.test_admin import log_in, make_admin

PUBLIC = "https://93.184.215.14/hooks"
NORTH = "https://[2606:4700:4700::1111]/north-only"


def add(db: Database, tenant: str, url: str, name: str) -> tuple[int, str]:
    with db.write() as conn:
        return endpoints.add(conn, tenant, url, name, allow_private=False)


def change(db: Database, endpoint_id: int, **values: Any) -> None:
    """Write an endpoint's delivery state as the delivery loop would."""
    with db.write() as conn:
        conn.execute(
            update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).values(**values)
        )


def row(page: str, endpoint_id: int) -> str:
    """The text of the endpoint's table row, tags removed, blanks collapsed."""
    match = re.search(rf'<tr id="endpoint-{endpoint_id}".*?</tr>', page, re.S)
    assert match, f"endpoint {endpoint_id} is listed"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(0))).split())


@pytest.fixture
def north(db: Database) -> str:
    with db.write() as conn:
        policy_changes.create_tenant(conn, "north", default_cells(), actor="test")
    return "north"


@pytest.fixture
def sysadmin(app: Flask, db: Database) -> FlaskClient:
    client = app.test_client()
    make_admin(db, "sysadmin")
    assert log_in(client, "sysadmin").status_code == 303
    return client


def test_the_page_lists_the_tenants_endpoints_with_the_facts_of_webhooks_list(
    sysadmin: FlaskClient, db: Database, api: Api
) -> None:
    sis, secret = add(db, "default", PUBLIC, "Student information system")
    gradebook, _ = add(db, "default", PUBLIC + "/grades", "Gradebook")
    complete(api, "maths-7b-t1")  # one event external systems newly see
    at = utcnow()
    delivered = WebhookEndpoint.delivered_seq + 1  # the event, answered 2xx
    change(
        db, sis, last_attempt_at=at, last_status=200, last_success_at=at, delivered_seq=delivered
    )
    change(
        db,
        gradebook,
        state="disabled",
        state_reason="answered 410 Gone",
        last_attempt_at=at,
        last_status=410,
    )
    page = sysadmin.get("/admin/external-systems?tenant=default")
    assert page.status_code == 200
    shown = at.strftime("%Y-%m-%d %H:%M UTC")
    assert row(page.text, sis) == (
        f"{sis} Student information system {PUBLIC} active {shown}, HTTP 200 {shown} 0 events"
    )
    assert row(page.text, gradebook) == (
        f"{gradebook} Gradebook {PUBLIC}/grades disabled: answered 410 Gone "
        f"{shown}, HTTP 410 never 1 event"
    )
    assert secret not in page.text and "whsec_" not in page.text
    assert 'aria-current="page">External systems</a>' in page.text


def test_an_attempt_without_an_answer_shows_its_error_escaped_and_inert(
    sysadmin: FlaskClient, db: Database
) -> None:
    endpoint_id, _ = add(db, "default", PUBLIC, "SIS")
    change(db, endpoint_id, last_attempt_at=utcnow(), last_error="<script>x()</script>\u202e")
    page = sysadmin.get("/admin/external-systems?tenant=default").text
    assert "no answer" in row(page, endpoint_id)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert '<span class="codepoint">U+202E</span>' in page and "\u202e" not in page


def test_a_tenant_without_endpoints_says_so(sysadmin: FlaskClient) -> None:
    page = sysadmin.get("/admin/external-systems?tenant=default")
    assert page.status_code == 200 and 'id="none"' in page.text and "<table" not in page.text


def test_a_tenant_admin_sees_its_own_tenants_endpoints_only(
    app: Flask, db: Database, north: str
) -> None:
    theirs, _ = add(db, "default", PUBLIC, "Default's SIS")
    ours, _ = add(db, north, NORTH, "North's SIS")
    make_admin(db, "north_admin", tenant=north)
    client = app.test_client()
    log_in(client, "north_admin")
    page = client.get("/admin/external-systems")
    assert page.status_code == 200 and "Tenant <strong>north</strong>" in page.text
    assert row(page.text, ours) == f"{ours} North's SIS {NORTH} active never never 0 events"
    assert f'id="endpoint-{theirs}"' not in page.text
    assert PUBLIC not in page.text and "Default" not in page.text
    refused = client.get("/admin/external-systems?tenant=default")
    assert refused.status_code == 403 and PUBLIC not in refused.text


def test_an_all_tenant_admin_picks_the_tenant_and_an_unknown_one_is_404(
    sysadmin: FlaskClient, north: str
) -> None:
    assert sysadmin.get("/admin/external-systems").headers["Location"] == "/admin/tenants"
    assert sysadmin.get("/admin/external-systems?tenant=south").status_code == 404
    assert sysadmin.get("/admin/external-systems?tenant=North!").status_code == 404


def test_the_page_needs_a_login(app: Flask) -> None:
    response = app.test_client().get("/admin/external-systems?tenant=default")
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]


def test_every_workflow_tab_links_to_the_page(sysadmin: FlaskClient) -> None:
    page = sysadmin.get("/admin/workflow/behaviour?tenant=default").text
    assert 'href="/admin/external-systems?tenant=default"' in page
    current = re.findall(r'aria-current="page">([^<]+)</a>', page)
    assert current == ["Behaviour"], "the area's own tab is the current one, not External systems"
