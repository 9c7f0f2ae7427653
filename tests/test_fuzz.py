"""Every route, fuzzed, on SQLite and PostgreSQL (issue 11, item 5): hypothesis sends raw and
mutated bodies, headers, query strings and path segments -- other scripts' digits, integers
beyond 64 bits, control and bidirectional characters, CR/LF, NUL, deep nesting, duplicate keys,
latin-1, UTF-16 and BOM-prefixed bodies -- and every answer must be below 500, carry no traceback
or SQL, and never allow a question whose role is malformed. The routes come from the app's
url_map, so a new route is fuzzed without a change here; admin pages are fuzzed signed in, with
the form's CSRF token. Derandomized with a fixed number of examples per route group: CI runs the
same requests every time."""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.routing import Rule

from service.limits import MAX_DEPTH
from tests.test_admin import csrf_token, form_fields, log_in, make_admin

PER_ROUTE = 25
"""Examples per route and method, per store (each example is one request)."""
LOGIN_EXAMPLES = 120


def fuzzing(examples: int) -> settings:
    """Hypothesis settings for a fixed, repeatable run of `examples` requests."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


SPECIALS = [
    "\x00",
    "\r",
    "\n",
    "\r\n",
    "\t",
    "\x1b",
    "\x7f",
    "\u202e",  # right-to-left override
    "\u2066",  # left-to-right isolate
    "\u200f",  # right-to-left mark
    "\u200b",  # zero-width space
    "\ufeff",  # BOM
    "١٢",  # Arabic-Indic digits
    "٣",
    "²",
    "𝟗",
    "9" * 30,
    str(2**63),
    str(2**31),
    "-1",
    "%00",
    "%0d%0a",
    "../",
    "//evil.example",
    "\\",
    "'",
    '"',
    ";--",
    "é",
    "Ā",
]
"""Pieces of nasty input; each holds a character no identifier may hold."""
LEAKS = re.compile(
    r"Traceback|File \"|sqlalchemy|psycopg|sqlite3|\bSELECT .* FROM\b|\bINSERT INTO\b|"
    r"\bUPDATE \w+ SET\b|\[SQL:"
)
"""What an answer must never show: a trace or SQL text (SQLAlchemy writes SQL in capitals)."""
ALLOWED = re.compile(rb'"(allowed|decision)":\s*true')
PASSWORD = "correct horse battery staple"

# -- strategies ------------------------------------------------------------------------------

nasty = st.lists(
    st.one_of(st.sampled_from(SPECIALS), st.text(max_size=4)), min_size=1, max_size=4
).map("".join)
"""Text holding nasty pieces (or none: plain text, which may be valid)."""
bad_name = st.tuples(st.text("abc_", max_size=3), st.sampled_from(SPECIALS), nasty).map("".join)
"""Text that is never an identifier: it holds one of SPECIALS."""
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**62, max_value=2**80),
    st.sampled_from([2**63, -(2**63) - 1, 2**31, 10**400]),
    st.floats(allow_nan=False),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, nasty),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _deep(depth: int, opener: str) -> str:
    """A JSON text nested `depth` deep."""
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


deep_json = st.builds(_deep, st.integers(MAX_DEPTH - 2, 3000), st.sampled_from(["[", "{"]))


def _encoded(text: str, encoding: str) -> bytes:
    """A body in an odd encoding: latin-1 (where it can be), UTF-16, or UTF-8 after a BOM."""
    if encoding == "utf-8-sig":
        return b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass")
    return text.encode(encoding, "replace")


ENCODINGS = st.sampled_from(["utf-8", "utf-8", "utf-8", "latin-1", "utf-16", "utf-8-sig"])

# -- bodies: valid shapes with a malformed role, or anything at all --------------------------

ROLE = "__ROLE__"
PHASE = {"type": "phase", "id": "assessment/completed"}
SUBJECT = {"type": "role", "id": ROLE}
ACCESS = {"subject": SUBJECT, "action": {"name": "view"}, "resource": PHASE}
TEMPLATES: dict[str, dict[str, Any]] = {
    "api.authorize": {"role": ROLE, "action": "view", "area": "assessment", "phase": "completed"},
    "api.permissions": {"role": ROLE, "area": "assessment", "phase": "completed"},
    "api.authorize_batch": {
        "requests": [
            {"id": "1", "role": ROLE, "action": "view", "area": "assessment", "phase": "completed"}
        ]
    },
    "authzen.evaluation": ACCESS,
    "authzen.evaluations": {**ACCESS, "evaluations": [{}, {"subject": SUBJECT}]},
    "authzen.search_resource": {**ACCESS, "resource": {"type": "phase"}},
    "authzen.search_action": {"subject": SUBJECT, "resource": PHASE},
    "authzen.search_subject": {**ACCESS, "subject": {"type": "role"}},
}
"""Valid question bodies of the deciding endpoints, their role left to fill: the fuzz fills it
with something that is never a role, so none of them may ever allow."""
GENERIC = {
    "tenant": "default",
    "id": "a1",
    "area": "assessment",
    "role": ROLE,
    "actor": ROLE,
    "reason": ROLE,
    "ids": [ROLE],
}
"""A body for the other routes: every field they read, malformed where it is free."""


def _fill(template: Any, value: Any) -> Any:
    """The template with each ROLE replaced by `value`."""
    if template == ROLE:
        return value
    if isinstance(template, dict):
        return {k: _fill(v, value) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, value) for v in template]
    return template


def _with_extra(data: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    """The body with one field more (or one replaced)."""
    return {**data, name: value}


@st.composite
def poisoned(draw: st.DrawFn, endpoint: str) -> tuple[bytes, bool]:
    """A body for `endpoint` and whether its role is malformed (then nothing may be allowed)."""
    template = TEMPLATES.get(endpoint, GENERIC)
    role = draw(st.one_of(bad_name, json_values.filter(lambda v: not isinstance(v, str))))
    data = _fill(template, role)
    if draw(st.booleans()):
        extra = st.one_of(json_values, st.builds(lambda t: {"token": t}, st.one_of(cursors, nasty)))
        data = _with_extra(data, draw(st.sampled_from([*data, "page", "x"])), draw(extra))
        return _dumped(draw, data), False  # the extra may overwrite the poisoned role
    if draw(st.booleans()) and isinstance(data, dict) and "role" in data:
        # duplicate keys: a valid role first, the malformed one last (pydantic keeps the last)
        text = json.dumps(data)
        return text.replace('"role":', '"role": "parent", "role":', 1).encode(), True
    return _dumped(draw, data), True


def _dumped(draw: st.DrawFn, data: Any) -> bytes:
    text = json.dumps(data, ensure_ascii=draw(st.booleans()))
    return _encoded(text, draw(ENCODINGS))


def bodies(endpoint: str) -> st.SearchStrategy[tuple[bytes, bool]]:
    """Bodies for an endpoint: poisoned valid shapes, any JSON, deep nesting, raw bytes."""
    return st.one_of(
        poisoned(endpoint),
        st.tuples(json_values.map(lambda v: json.dumps(v).encode()), st.just(False)),
        st.tuples(deep_json.map(str.encode), st.just(False)),
        st.tuples(st.binary(max_size=64), st.just(False)),
        st.tuples(st.tuples(nasty, ENCODINGS).map(lambda t: _encoded(*t)), st.just(False)),
    )


# -- the routes ------------------------------------------------------------------------------

VALID_SEGMENT = {"tenant": "default", "assessment_id": "a1", "area_id": "behaviour"}
PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def routes(app: Flask, admin: bool) -> list[tuple[Rule, str]]:
    """Every (rule, method) of the app, the admin's or the others, in a stable order."""
    found = [
        (rule, method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/admin") == admin
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    ]
    return sorted(found, key=lambda pair: (pair[0].rule, pair[1]))


def segment(name: str) -> st.SearchStrategy[str]:
    """A path segment: the valid one, or nasty text (percent-encoded, as a client sends it)."""
    nasty_segment = nasty.map(lambda text: quote(text.encode("utf-8", "surrogatepass"), safe=""))
    valid = st.just(VALID_SEGMENT.get(name, "x"))
    return st.one_of(valid, valid, nasty_segment, st.sampled_from(["9" * 30, "%00", "١٢"]))


@st.composite
def path_of(draw: st.DrawFn, rule: Rule) -> str:
    """The rule's path with each parameter drawn."""
    return PARAMETER.sub(lambda m: draw(segment(m.group(1))), rule.rule)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")


cursors = st.tuples(
    st.sampled_from(["v1", "v2", ""]),
    st.sampled_from(["default", "other", ""]),
    st.one_of(nasty, numbers.map(str)),
).map(lambda parts: _b64(":".join(parts)))
"""Cursors of the feed's own form, holding any number or text."""
QUERY_NAMES = ["tenant", "after", "limit", "page", "person", "area", "next", "step", "x"]


@st.composite
def query_string(draw: st.DrawFn) -> str:
    """A query string of known and unknown names, values nasty or numbers, sometimes doubled."""
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(QUERY_NAMES), st.one_of(nasty, numbers.map(str), cursors)),
            max_size=4,
        )
    )
    return "&".join(f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'))}" for k, v in pairs)


@dataclass
class Target:
    """The app under fuzz, a valid key, and a fresh client address per request (so the
    failed-authentication throttle of one example never answers another's)."""

    app: Flask
    key: str
    addresses: Iterator[int] = field(default_factory=itertools.count)

    def environ(self) -> dict[str, str]:
        n = next(self.addresses)
        return {"REMOTE_ADDR": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"}


@pytest.fixture
def target(app: Flask, make_key: Callable[[str | None], str]) -> Target:
    key = make_key(None)
    client = app.test_client()
    client.post("/assessments", json={"id": "a1", "area": "assessment"}, headers=_bearer(key))
    return Target(app, key)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def check(response: Any, malformed: bool = False) -> None:
    """No 5xx, no traceback or SQL, and no allow when the question was malformed."""
    data = response.get_data()
    assert response.status_code < 500, data[:500]
    assert not LEAKS.search(data.decode("utf-8", "replace")), data[:500]
    if malformed:
        assert not ALLOWED.search(data), data[:500]


HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-16",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
            ]
        ),
        "X-Request-ID": nasty.filter(lambda v: "\r" not in v and "\n" not in v),
        "Accept": nasty.filter(lambda v: "\r" not in v and "\n" not in v),
    },
)
AUTH = st.one_of(
    st.just("good"),
    st.just("good"),
    st.just(None),
    nasty.filter(lambda v: "\r" not in v and "\n" not in v).map(lambda v: f"Bearer wa_{v}_x"),
    st.sampled_from(
        ["Bearer", "Basic abc", "Bearer wa__", "Bearer wa_\x00_\x00", "Bearer wa_a\x00_x"]
    ),
)


def _headers(target: Target, auth: str | None, extra: dict[str, str]) -> dict[str, str]:
    """The request's headers as latin-1 text (what HTTP carries), the key filled in."""
    headers = {k: v.encode("utf-8", "replace").decode("latin-1") for k, v in extra.items()}
    if auth == "good":
        headers.update(_bearer(target.key))
    elif auth is not None:
        headers["Authorization"] = auth.encode("utf-8", "replace").decode("latin-1")
    return headers


# -- the API, native and AuthZEN -------------------------------------------------------------


@st.composite
def api_request(draw: st.DrawFn, pairs: list[tuple[Rule, str]]) -> dict[str, Any]:
    rule, method = draw(st.sampled_from(pairs))
    body, malformed = draw(bodies(rule.endpoint)) if method == "POST" else (b"", False)
    return dict(
        method=method,
        path=draw(path_of(rule)),
        query=draw(query_string()),
        body=body,
        malformed=malformed,
        auth=draw(AUTH),
        headers=draw(HEADERS),
    )


def test_no_api_input_is_a_server_error_or_an_allow(target: Target) -> None:
    pairs = routes(target.app, admin=False)
    assert len(pairs) >= 20, "the walk finds the API's routes"
    client = target.app.test_client()

    @fuzzing(PER_ROUTE * len(pairs))
    @given(api_request(pairs))
    def send(asked: dict[str, Any]) -> None:
        response = client.open(
            asked["path"],
            method=asked["method"],
            query_string=asked["query"],
            data=asked["body"],
            headers=_headers(target, asked["auth"], asked["headers"]),
            environ_base=target.environ(),
        )
        check(response, asked["malformed"])

    send()


# -- the admin pages, signed in --------------------------------------------------------------


@pytest.fixture
def admin_client(target: Target, db: Any) -> FlaskClient:
    client = target.app.test_client()
    make_admin(db, "sysadmin")
    assert log_in(client, "sysadmin").status_code == 303
    return client


SEPARATE = {"admin.login", "admin.logout"}
FORM_NAMES = ["tenant", "version", "step", "username", "password", "next", "x"]


@st.composite
def form(draw: st.DrawFn, fields: dict[str, str]) -> dict[str, str]:
    """The page's own form fields, some replaced by nasty values, and some fields more."""
    names = [*fields, *FORM_NAMES]
    changed = draw(
        st.dictionaries(st.sampled_from(names), st.one_of(nasty, numbers.map(str)), max_size=4)
    )
    return {**fields, **changed}


@st.composite
def admin_request(draw: st.DrawFn, pairs: list[tuple[Rule, str]]) -> dict[str, Any]:
    """An admin page's request (its form is drawn in the test, from the page's own fields). The
    login has its own test; a logout would end the session every other example needs (it is
    test_admin's)."""
    rule, method = draw(st.sampled_from([p for p in pairs if p[0].endpoint not in SEPARATE]))
    return dict(method=method, path=draw(path_of(rule)), query=draw(query_string()))


def test_no_admin_input_is_a_server_error(target: Target, admin_client: FlaskClient) -> None:
    pairs = routes(target.app, admin=True)
    assert {rule.endpoint for rule, _ in pairs} >= {"admin.audit", "admin.workflow_submit"}
    page = admin_client.get("/admin/workflow/behaviour?tenant=default").text
    fields = {**form_fields(page), "csrf_token": csrf_token(page)}

    @fuzzing(PER_ROUTE * len(pairs))
    @given(admin_request(pairs), st.data())
    def send(asked: dict[str, Any], data: st.DataObject) -> None:
        sent = data.draw(form(fields)) if asked["method"] == "POST" else None
        response = admin_client.open(
            asked["path"],
            method=asked["method"],
            query_string=asked["query"],
            data=sent,
            environ_base=target.environ(),
        )
        check(response)

    send()


@st.composite
def login_form(draw: st.DrawFn) -> dict[str, str]:
    good = st.just({"username": "sysadmin", "password": PASSWORD})
    # wrong passwords go to other names: five for sysadmin would lock it (accounts.py)
    wrong = st.fixed_dictionaries(
        {"username": st.one_of(st.just("other"), nasty), "password": nasty}
    )
    return {
        **draw(st.one_of(good, wrong)),
        "next": draw(
            st.one_of(
                nasty,
                nasty.map(lambda text: "/admin/" + text),
                st.sampled_from(["/admin/audit", "//evil.example", "/\t/evil.example"]),
            )
        ),
    }


def test_no_login_input_is_a_server_error(target: Target, db: Any) -> None:
    make_admin(db, "sysadmin")
    make_admin(db, "other")
    client = target.app.test_client()

    @fuzzing(LOGIN_EXAMPLES)
    @given(login_form(), query_string())
    def send(fields: dict[str, str], query: str) -> None:
        page = client.get("/admin/login?" + query, environ_base=target.environ())
        check(page)
        response = client.post(  # a fresh token: a login before this one began a new session
            "/admin/login",
            query_string=query,
            data={"csrf_token": csrf_token(page.text), **fields},
            environ_base=target.environ(),
        )
        check(response)
        assert response.status_code != 400, "the form's own token is accepted"
        location = response.headers.get("Location", "")
        assert location == "" or location.startswith("/admin/"), location

    send()
