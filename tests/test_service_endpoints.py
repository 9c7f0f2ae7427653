"""/healthz, /openapi.json and /metrics: public, machine-readable, complete, and bounded: no
method or path a client sends adds a series to /metrics."""

from __future__ import annotations

import random
import re
import string
from pathlib import Path
from typing import Any

from flask import Flask
from openapi_spec_validator import validate
from prometheus_client import REGISTRY

from bench.server import Server, api_headers, create_api_key, serving
from service.metrics import METHODS, record_request
from tests.conftest import Api

STRANGERS = 1500
"""Requests in each batch of random methods and paths."""


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


def test_metrics_stay_bounded_whatever_methods_and_paths_arrive(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Through a real `serve` (its metrics live in a folder of per-process files): after one batch
    of random methods and paths, a second batch of other random ones adds no series to the
    exposition and no byte to the metrics folder."""
    rng, key = random.Random(11), create_api_key(sqlite_url)
    # The folder is made by tempfile beside the server's other temporary files: here, to be read.
    with serving(sqlite_url, workers=1, env={"TMPDIR": str(tmp_path)}) as server:
        _series(server)  # a scrape is counted after it answers: the next one shows its series
        _strangers(server, rng, key)
        series, folder = _series(server), _bytes(tmp_path)
        _strangers(server, rng, key)
        assert _series(server) == series
        assert _bytes(tmp_path) == folder
    assert "other" in {labels.get("method") for labels in series.values()}
    assert "/assessments/<assessment_id>" in {labels.get("endpoint") for labels in series.values()}


def _strangers(server: Server, rng: random.Random, key: str) -> None:
    """STRANGERS requests, each kind in turn: an unknown method at /healthz, at a route with a
    random id and at a random path; a GET of a random path and of a random assessment."""
    kinds = (
        lambda: (_method(rng), "/healthz"),
        lambda: (_method(rng), f"/assessments/{_word(rng)}"),
        lambda: (_method(rng), f"/{_word(rng)}/{_word(rng)}"),
        lambda: ("GET", f"/{_word(rng)}"),
        lambda: ("GET", f"/assessments/{_word(rng)}"),
    )
    for n in range(STRANGERS):
        method, path = kinds[n % len(kinds)]()
        assert server.request(method, path, headers=api_headers(key)).status in (400, 404, 405)


def _method(rng: random.Random) -> str:
    """A random method gunicorn accepts (an uppercase token of 3-20 characters), none we name."""
    method = "".join(rng.choices(string.ascii_uppercase + string.digits, k=rng.randint(3, 20)))
    return method if method not in METHODS else _method(rng)


def _word(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits + "-._~", k=rng.randint(1, 30)))


def _series(server: Server) -> dict[str, dict[str, str]]:
    """Each series of the exposition (its name and labels, without the value) with its labels."""
    reply = server.request("GET", "/metrics")
    assert reply.status == 200
    lines = [line for line in reply.body.decode().splitlines() if not line.startswith("#")]
    keys = [line.rsplit(" ", 1)[0] for line in lines if line]
    return {key: dict(re.findall(r'(\w+)="([^"]*)"', key)) for key in keys}


def _bytes(tmp: Path) -> int:
    """The size of the server's metrics folder."""
    [folder] = tmp.glob("workflow-authz-metrics-*")
    return sum(path.stat().st_size for path in folder.iterdir())


def test_a_method_or_status_outside_the_fixed_sets_counts_as_other() -> None:
    labels = {"method": "other", "endpoint": "unmatched", "status": "other"}
    before = REGISTRY.get_sample_value("workflow_authz_http_requests_total", labels) or 0.0
    record_request("BREW", None, 799, 0.001)
    assert REGISTRY.get_sample_value("workflow_authz_http_requests_total", labels) == before + 1
