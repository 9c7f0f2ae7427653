"""Per-call timing: warm up, then the median of several runs of many calls, in microseconds.

Each measured function first answers every input once, untimed: that pass warms caches, returns
the answers for checking, and sizes a timed run (the inputs repeated to last about `seconds`).
Runs of several functions are then interleaved round by round, so a burst of load from another
process on this 2-core machine lands on every column alike instead of skewing one ratio; the
median of the rounds is reported. The garbage collector is paused while a run is timed, as
timeit does.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Timing:
    """The result of one measurement: median µs per call, every run's figure, calls per run."""

    us_per_call: float
    runs_us: tuple[float, ...]
    calls_per_run: int


@dataclass(frozen=True)
class Run:
    """One prepared timed run: `once()` makes `calls` calls and returns the nanoseconds taken."""

    calls: int
    once: Callable[[], int]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a timed section, restoring its previous state."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _run_ns(fn: Callable[[T], object], inputs: Sequence[T]) -> int:
    """Nanoseconds taken by calling `fn` once on every input, in order."""
    with _gc_paused():
        start = time.perf_counter_ns()
        for item in inputs:
            fn(item)
        return time.perf_counter_ns() - start


def cycle(items: Sequence[T], count: int) -> list[T]:
    """The first `count` items of `items` repeated end to end (the inputs of a timed run)."""
    if not items:
        raise ValueError("cycle needs at least one item")
    return [items[i % len(items)] for i in range(count)]


def prepare(fn: Callable[[T], R], inputs: Sequence[T], *, seconds: float) -> tuple[list[R], Run]:
    """Answer every input once (warm-up, results returned), then size a run of ~`seconds`.

    A run never holds fewer calls than there are inputs, so every run sees the whole mix.
    """
    if not inputs:
        raise ValueError("prepare needs at least one input")
    start = time.perf_counter_ns()
    results = [fn(item) for item in inputs]
    per_ns = max(1, (time.perf_counter_ns() - start) // len(inputs))
    repeated = cycle(inputs, max(len(inputs), int(seconds * 1e9 / per_ns)))
    return results, Run(len(repeated), lambda: _run_ns(fn, repeated))


def interleaved(runs: Mapping[K, Run], rounds: int) -> dict[K, Timing]:
    """Time every run once per round, round after round; the median µs per call of each."""
    if rounds < 1:
        raise ValueError("interleaved needs at least one round")
    figures: dict[K, list[float]] = {key: [] for key in runs}
    for _ in range(rounds):
        for key, run in runs.items():
            figures[key].append(run.once() / run.calls / 1000)
    return {
        key: Timing(statistics.median(found), tuple(found), runs[key].calls)
        for key, found in figures.items()
    }


def per_call(
    fn: Callable[[T], R], inputs: Sequence[T], *, seconds: float, runs: int = 5
) -> tuple[list[R], Timing]:
    """One function measured alone: its answers on `inputs` and its median µs per call."""
    answers, run = prepare(fn, inputs, seconds=seconds)
    return answers, interleaved({"only": run}, runs)["only"]


def timed(fn: Callable[[], R]) -> tuple[R, float]:
    """Call `fn` once; its result and the seconds it took (for one-off costs such as a load)."""
    start = time.perf_counter_ns()
    result = fn()
    return result, (time.perf_counter_ns() - start) / 1e9
