"""Generated requests from /openapi.json (schemathesis, fixed seed, bounded examples): no 5xx, no
status code or body the description does not promise, and schema-invalid input always refused."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from service import create_app, keys


@pytest.fixture(scope="module")
def fuzz_app(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    path = tmp_path_factory.mktemp("fuzz") / "store.sqlite3"
    shutil.copy(sqlite_template, path)
    app = create_app({"DATABASE_URL": f"sqlite:///{path}"})
    with app.extensions["workflow_authz.db"].write() as conn:
        app.config["FUZZ_KEY"] = keys.create(conn, "fuzz", None)
    yield app
    app.extensions["workflow_authz.db"].dispose()


OPERATIONS = [
    ("/authorize", "POST"),
    ("/authorize/batch", "POST"),
    ("/assessments", "POST"),
    ("/assessments/{assessment_id}", "GET"),
    ("/assessments/{assessment_id}/advance", "POST"),
    ("/assessments/advance", "POST"),
    ("/assessments/{assessment_id}/reopen", "POST"),
    ("/events", "GET"),
    ("/permissions", "POST"),
    ("/healthz", "GET"),
    ("/openapi.json", "GET"),
    ("/access/v1/evaluation", "POST"),
    ("/access/v1/evaluations", "POST"),
    ("/access/v1/search/subject", "POST"),
    ("/access/v1/search/resource", "POST"),
    ("/access/v1/search/action", "POST"),
    ("/tenants/{tenant}/access/v1/evaluation", "POST"),
    ("/.well-known/authzen-configuration", "GET"),
    ("/.well-known/authzen-configuration/tenants/{tenant}", "GET"),
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
# Negative data (schema-invalid on purpose) for the operations that take input; schemathesis 4.32
# finds no negative case for the batch body (Unsatisfiable): test_api_authorize covers it by hand.
# A boxcar's invalid item is answered in place (its own deny, as the issue asks), so negative items
# get a 200 by design: test_authzen covers the boxcar's own structure and its items' errors.
NO_NEGATIVE = (
    "/healthz",
    "/openapi.json",
    "/authorize/batch",
    "/access/v1/evaluations",
    "/.well-known/authzen-configuration",
)
RUNS = [(p, m, POSITIVE) for p, m in OPERATIONS] + [
    (p, m, NEGATIVE) for p, m in OPERATIONS if p not in NO_NEGATIVE
]


@pytest.mark.parametrize(("path", "method", "mode"), RUNS)
def test_generated_requests_are_answered_as_described(
    fuzz_app: Flask, path: str, method: str, mode: schemathesis.GenerationMode
) -> None:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)
    headers = {"Authorization": f"Bearer {fuzz_app.config['FUZZ_KEY']}"}

    @given(case=schema[path][method].as_strategy(generation_mode=mode))
    @settings(
        max_examples=40,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()
