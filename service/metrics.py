"""Prometheus metrics: requests, latencies and decisions, summed across gunicorn workers."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

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


def exposition() -> tuple[bytes, str]:
    """The metrics text; with PROMETHEUS_MULTIPROC_DIR set (by `serve`), summed over workers."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
