"""Prometheus metrics: requests, latencies and decisions, summed across the server's workers.

Every label value comes from a fixed set, whatever a client sends: a series is a file entry in
every worker's metrics folder and a line of every scrape, so a label that took a raw method or path
would let anyone grow both without bound. Endpoints are the route's template (`/assessments/<id>`),
never the path asked for; methods and statuses outside their sets count as `other`.
"""

from __future__ import annotations

import os
from http import HTTPStatus

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


def record_request(method: str, rule: str | None, status: int, seconds: float) -> None:
    """Count and time one answered request under bounded labels (see the module's docstring)."""
    endpoint = rule or UNMATCHED
    code = str(status)
    REQUESTS.labels(
        method if method in METHODS else OTHER, endpoint, code if code in STATUSES else OTHER
    ).inc()
    LATENCY.labels(endpoint).observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The metrics text; with PROMETHEUS_MULTIPROC_DIR set (by `serve`), summed over workers."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
