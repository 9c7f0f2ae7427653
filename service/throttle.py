"""Limits on failures, never on success: failed API authentications per client address and per
key prefix, failed admin logins per address and per (username, address), each answered 429 with
Retry-After once over its budget. A request with a valid key, or a right password from an address
that has not been failing, is never refused because of what other requests did.

Counted with the `limits` library in moving windows: in each process's memory by default, or in
the storage RATE_LIMIT_STORAGE names (`redis://host:6379/0`), which every process and host that
names it shares. When that storage cannot be reached the counting degrades to this process's
memory with a logged warning: a limiter outage must never turn requests into 5xx, and failures
are still limited (per process) meanwhile.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from flask import Flask, current_app
from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError, StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from limits.util import WindowStats

from service.config import ConfigError
from service.errors import RateLimited

T = TypeVar("T")

log = logging.getLogger("workflow_authz")

API_ADDRESS = parse_many("20/minute")
"""Failed API authentications from one client address."""
API_PREFIX = parse_many("20/minute")
"""Failed API authentications naming one key prefix (guesses at one key), from anywhere."""
LOGIN_ACCOUNT = parse_many("5/minute;10/15 minutes;20/hour")
"""Failed logins for one username from one address: growing delays (a minute, then up to 15
minutes, then up to an hour), whether or not the username exists."""
LOGIN_ADDRESS = parse_many("20/minute;100/hour")
"""Failed logins from one address, whatever the usernames (guessing names, or a CPU flood)."""
IPV6_NETWORK = 64
"""An IPv6 client is counted by its /64 network: one subscriber holds a whole /64, so counting
each of its 2**64 addresses apart would give it no limit at all."""
STORAGE_TIMEOUT = 0.5
"""Seconds a request waits for the shared storage before counting in memory instead."""
WARN_EVERY = 60.0
"""Seconds between two warnings that the shared storage cannot be reached."""
RETRY_SHARED_AFTER = 5.0
"""Seconds of counting in memory after the shared storage failed, before it is tried again: a
stalled storage costs one request its timeout every few seconds, not every request."""


@dataclass(frozen=True)
class Budget:
    """One kind of failure: its limits and what a key of it is named after."""

    name: str
    limits: Sequence[RateLimitItem]


API_BY_ADDRESS = Budget("api-address", API_ADDRESS)
API_BY_PREFIX = Budget("api-prefix", API_PREFIX)
LOGIN_BY_ACCOUNT = Budget("login-account", LOGIN_ACCOUNT)
LOGIN_BY_ADDRESS = Budget("login-address", LOGIN_ADDRESS)


class FailureLimits:
    """Counts failures in the configured storage, falling back to memory when it fails."""

    def __init__(self, storage: str) -> None:
        self.storage = storage
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared = (
            None if storage.startswith("memory://") else MovingWindowRateLimiter(_storage(storage))
        )
        self._warned_at = -math.inf
        self._down_until = -math.inf

    def check(self, budget: Budget, *identifiers: str) -> None:
        """RateLimited when the failures counted under `identifiers` used up a limit."""
        key = (budget.name, *identifiers)
        for item in budget.limits:
            if not self._counted(functools.partial(_test, item, key)):
                stats = self._counted(functools.partial(_stats, item, key))
                retry = max(1, math.ceil(stats.reset_time - time.time()))
                raise RateLimited(f"too many failed attempts; retry in {retry} s", retry)

    def fail(self, budget: Budget, *identifiers: str) -> None:
        """Count one failure under `identifiers` in each of the budget's limits."""
        key = (budget.name, *identifiers)
        for item in budget.limits:
            self._counted(functools.partial(_hit, item, key))

    def forget(self, budget: Budget, *identifiers: str) -> None:
        """Drop the failures counted under `identifiers` (after a success that proves them)."""
        key = (budget.name, *identifiers)
        for item in budget.limits:
            self._counted(functools.partial(_clear, item, key))

    def _counted(self, ask: Callable[[MovingWindowRateLimiter], T]) -> T:
        """The limiter's answer from the shared storage, or from memory when that fails."""
        if self._shared is not None and time.monotonic() >= self._down_until:
            try:
                return ask(self._shared)
            except StorageError as error:
                self._down_until = time.monotonic() + RETRY_SHARED_AFTER
                self._warn(error)
        return ask(self._local)

    def _warn(self, error: StorageError) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning(
                "rate-limit storage cannot be reached (%r): counting failures in this process "
                "until it answers",
                error.storage_error,
            )


def client(address: str | None) -> str:
    """What failures from a client address are counted under: the address itself (IPv4), or its
    /64 network (IPv6); `unknown` when the server was not told."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is the IPv4 client 192.0.2.1
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_NETWORK}", strict=False))
    return str(parsed)


def _test(item: RateLimitItem, key: tuple[str, ...], limiter: MovingWindowRateLimiter) -> bool:
    return limiter.test(item, *key)


def _stats(
    item: RateLimitItem, key: tuple[str, ...], limiter: MovingWindowRateLimiter
) -> WindowStats:
    return limiter.get_window_stats(item, *key)


def _hit(item: RateLimitItem, key: tuple[str, ...], limiter: MovingWindowRateLimiter) -> bool:
    return limiter.hit(item, *key)


def _clear(item: RateLimitItem, key: tuple[str, ...], limiter: MovingWindowRateLimiter) -> None:
    limiter.clear(item, *key)


def _storage(uri: str) -> Storage:
    """The shared storage, its errors wrapped, its waits bounded (a stalled Redis must not
    stall requests); ConfigError naming the setting when the URL is not one `limits` knows."""
    try:
        storage = storage_from_string(
            uri,
            wrap_exceptions=True,
            socket_timeout=STORAGE_TIMEOUT,
            socket_connect_timeout=STORAGE_TIMEOUT,
        )
    except (ConfigurationError, ValueError) as error:
        raise ConfigError(f"WORKFLOW_AUTHZ_RATE_LIMIT_STORAGE: {error}") from None
    if not isinstance(storage, Storage):  # an async:// scheme: requests here are synchronous
        raise ConfigError("WORKFLOW_AUTHZ_RATE_LIMIT_STORAGE must name a synchronous storage")
    return storage


_EXTENSION = "workflow_authz.throttle"


def init_app(app: Flask) -> None:
    """One set of failure limits per app, on the storage the settings name."""
    app.extensions[_EXTENSION] = FailureLimits(app.config["RATE_LIMIT_STORAGE"])


def throttle() -> FailureLimits:
    """The current app's failure limits."""
    limits: FailureLimits = current_app.extensions[_EXTENSION]
    return limits
