"""Prometheus metrics: requests, latencies, decisions and webhook deliveries, summed across the
server's workers and the delivery process.

Every label value comes from a fixed set, whatever a client sends: a series is a file entry in
every worker's metrics folder and a line of every scrape, so a label that took a raw method or path
would let anyone grow both without bound. Endpoints are the route's template (`/assessments/<id>`),
never the path asked for; methods and statuses outside their sets count as `other`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
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
from prometheus_client.core import GaugeMetricFamily

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

DELIVERY_RESULTS = ("success", "failed", "timeout", "refused", "gone")
"""How a webhook delivery attempt ended: a 2xx; another answer (a redirect included) or no
connection; no answer within the timeout; the address rule refused the host as it resolves now;
410 Gone (the endpoint is disabled)."""
DELIVERIES = Counter(
    "workflow_authz_webhook_deliveries_total",
    "Webhook delivery attempts, by result.",
    ["result"],
)
DELIVERY_LAG = Histogram(
    "workflow_authz_webhook_delivery_lag_seconds",
    "Seconds from an event's commit to its endpoint's 2xx answer.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0),
)


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


def record_delivery(result: str, lag: float | None) -> None:
    """Count one delivery attempt; time from commit to 2xx when it succeeded."""
    DELIVERIES.labels(result).inc()
    if lag is not None:
        DELIVERY_LAG.observe(max(0.0, lag))


class _Backlog:
    """The webhook backlog by endpoint state, as the store says at scrape time.

    Read from the store rather than kept by the delivery loop: every worker answers a scrape
    with the same truth, with no multiprocess gauge mode to choose, and the figure is right
    even when no loop runs (the backlog then only grows)."""

    def __init__(self, counts: Mapping[str, tuple[int, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        endpoints = GaugeMetricFamily(
            "workflow_authz_webhook_endpoints", "Webhook endpoints, by state.", labels=["state"]
        )
        backlog = GaugeMetricFamily(
            "workflow_authz_webhook_backlog_events",
            "Events webhook endpoints have not had yet, by endpoint state.",
            labels=["state"],
        )
        for state, (count, behind) in self.counts.items():
            endpoints.add_metric([state], count)
            backlog.add_metric([state], behind)
        yield endpoints
        yield backlog


def exposition(backlog: Mapping[str, tuple[int, int]] | None = None) -> tuple[bytes, str]:
    """The metrics text; with PROMETHEUS_MULTIPROC_DIR set (by `serve`), summed over workers
    (and the delivery process beside them). `backlog`: endpoints and events behind per
    endpoint state, read from the store (left out when it could not be read)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if backlog is not None:
        extra = CollectorRegistry()
        extra.register(_Backlog(backlog))
        text += generate_latest(extra)
    return text, CONTENT_TYPE_LATEST
