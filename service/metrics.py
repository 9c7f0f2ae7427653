"""Prometheus metrics: requests, latencies and decisions, summed across gunicorn workers.

Every label value comes from a fixed set, whatever a client sends: a series is a file entry in
every worker's metrics folder and a line of every scrape, so a label that took a raw method or path
would let anyone grow both without bound. Endpoints are the route's template (`/assessments/<id>`),
never the path asked for; methods and statuses outside their sets count as `other`.
"""

from __future__ import annotations

import os
from http import HTTPStatus
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
"""The methods counted by name; any other is `other`."""
STATUSES = frozenset(str(status.value) for status in HTTPStatus)
"""The statuses counted by code (the registered ones); any other is `other`."""
UNMATCHED = "unmatched"
"""The endpoint of a request that no route (or no route's method) matched."""
OTHER = "other"

REQUESTS = Counter(
    "workflow_authz_http_requests_total",
    "HTTP requests answered.",
    ["method", "endpoint", "status"],
)
LATENCY = Histogram(
    "workflow_authz_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
DECISIONS = Counter("workflow_authz_decisions_total", "Authorization decisions made.", ["allowed"])
_DECIDED: dict[bool, Any] = {}
"""The decision counter's two series, looked up on first use."""


_SERIES: dict[tuple[str, str | None, int], tuple[Any, Any]] = {}
"""Each (counted method, route, status) seen: its request counter and latency histogram,
looked up once (labels() costs more than counting); as bounded as the labels."""


def record_request(method: str, rule: str | None, status: int, seconds: float) -> None:
    """Count and time one answered request under bounded labels (see the module's docstring)."""
    method = method if method in METHODS else OTHER
    series = _SERIES.get((method, rule, status))
    if series is None:
        series = _SERIES.setdefault((method, rule, status), _series(method, rule, status))
    series[0].inc()
    series[1].observe(seconds)


def _series(method: str, rule: str | None, status: int) -> tuple[Any, Any]:
    """The counter and histogram of one kind of request, under its bounded labels."""
    endpoint = rule or UNMATCHED
    code = str(status)
    counter = REQUESTS.labels(method, endpoint, code if code in STATUSES else OTHER)
    return counter, LATENCY.labels(endpoint)


def count_decision(allowed: bool) -> None:
    """Count one decision."""
    series = _DECIDED.get(allowed)
    if series is None:
        series = _DECIDED.setdefault(allowed, DECISIONS.labels(str(allowed).lower()))
    series.inc()


def exposition() -> tuple[bytes, str]:
    """The metrics text; with PROMETHEUS_MULTIPROC_DIR set (by `serve`), summed over workers."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
