"""At most a few password hashes at once, among every process of one `serve`: a bound per worker
process would allow that many hashes times the number of workers.

Each slot is a file that a hash holds an exclusive flock(2) on while it runs. The kernel drops the
lock when the holder closes it or dies (a worker killed mid-hash frees its slot), and every worker
of a `serve` opens the same files: `serve` names the folder before it forks them. Without a
folder (tests, `flask run`) the slots are a semaphore of this process's threads.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POLL = 0.005
"""Seconds between two looks for a free slot file while waiting."""


class HashSlots:
    """`count` slots: files in `folder` shared by processes, or this process's semaphore."""

    def __init__(self, count: int, folder: Path | None = None) -> None:
        self.count = count
        self.folder = folder
        self._threads = threading.BoundedSemaphore(count)

    @contextmanager
    def taken(self, wait: float) -> Iterator[bool]:
        """Hold a slot for the block, waiting at most `wait` seconds for one; yields False (and
        holds nothing) when none came free in time."""
        if self.folder is None:
            got = self._threads.acquire(timeout=wait)
            try:
                yield got
            finally:
                if got:
                    self._threads.release()
            return
        fd = _locked(self.folder, self.count, time.monotonic() + wait)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                os.close(fd)  # closing drops the lock

    def share(self, folder: Path) -> None:
        """Count slots as files in `folder` from now on: every process forked after this call
        (`serve`'s workers) shares them."""
        self.folder = folder


def _locked(folder: Path, count: int, deadline: float) -> int | None:
    """A slot file's descriptor, locked by this call; None when none came free by `deadline`."""
    while True:
        for slot in range(count):
            fd = os.open(folder / f"hash-slot-{slot}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL)
