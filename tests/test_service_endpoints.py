"""/healthz, /openapi.json and /metrics: public, machine-readable, and complete."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from openapi_spec_validator import validate

from tests.conftest import Api


def test_healthz_checks_the_store(app: Flask) -> None:
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.json["status"] == "ok"


def test_openapi_is_valid_and_describes_every_route(app: Flask) -> None:
    document: dict[str, Any] = app.test_client().get("/openapi.json").json
    validate(document)
    routes = {
        path
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith(("api.", "authzen."))
        for path in _paths(re.sub(r"<(\w+)>", r"{\1}", rule.rule))
    }
    assert routes == set(document["paths"])


def _paths(rule: str) -> list[str]:
    """A route's concrete paths: one per choice of an <any(a, b):name> converter."""
    match = re.search(r"<any\(([^)]*)\):\w+>", rule)
    if match is None:
        return [rule]
    return [rule.replace(match.group(0), choice.strip()) for choice in match.group(1).split(",")]


def test_metrics_count_requests_and_decisions(api: Api) -> None:
    api.post(
        "/authorize",
        {"role": "parent", "action": "view", "area": "behaviour", "phase": "completed"},
    )
    text = api.client.get("/metrics").get_data(as_text=True)
    assert 'workflow_authz_decisions_total{allowed="true"}' in text
    assert (
        'workflow_authz_http_requests_total{endpoint="/authorize",method="POST",status="200"}'
        in text
    )
