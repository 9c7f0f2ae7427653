"""Slowing down key guessing: too many failed authentications from one address get 429 for a while.

Per process and in memory: with N workers an address gets at most N x LIMIT tries per window,
which still makes guessing a 256-bit key hopeless; it exists to cut noise and load.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

from flask import Flask, current_app

from service.errors import RateLimited

LIMIT = 20
WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 10_000


class FailureThrottle:
    """Counts failed authentications per client address in a sliding window."""

    def __init__(self, limit: int = LIMIT, window: float = WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """RateLimited when the address used up its failures in the current window."""
        with self._lock:
            recent = self._recent(address, time.monotonic())
            if recent is not None and len(recent) >= self.limit:
                retry = max(1, int(self.window - (time.monotonic() - recent[0])) + 1)
                raise RateLimited(
                    f"too many failed authentications; retry in {retry} s", retry_after=retry
                )

    def fail(self, address: str) -> None:
        """Remember one failed authentication from the address."""
        now = time.monotonic()
        with self._lock:
            recent = self._recent(address, now)
            if recent is None:
                recent = self._failures[address] = deque()
            recent.append(now)
            self._failures.move_to_end(address)
            while len(self._failures) > MAX_ADDRESSES:
                self._failures.popitem(last=False)

    def _recent(self, address: str, now: float) -> deque[float] | None:
        recent = self._failures.get(address)
        while recent and now - recent[0] > self.window:
            recent.popleft()
        return recent


_EXTENSION = "workflow_authz.throttle"


def init_app(app: Flask) -> None:
    """One failure counter per process."""
    app.extensions[_EXTENSION] = FailureThrottle()


def throttle() -> FailureThrottle:
    """The current app's failure counter."""
    counter: FailureThrottle = current_app.extensions[_EXTENSION]
    return counter
