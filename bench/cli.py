"""The command-line boilerplate every benchmark shares: parser, backends, counts, progress."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any, TypeVar

from bench import wrk
from bench.store import BACKENDS, postgres_available

Progress = Callable[[str], None]
Opts = TypeVar("Opts")
Results = TypeVar("Results")
Number = TypeVar("Number", int, float)


def main(
    options: Opts,
    run: Callable[[Opts, Progress], Results],
    render: Callable[[Results, Opts], str],
    failed: Callable[[Results], bool],
) -> int:
    """Measure with progress on stderr, print the table on stdout; 1 if the run failed."""
    results = run(options, progress())
    print(render(results, options))
    return 1 if failed(results) else 0


def store_args(
    module: str, doc: str | None, argv: Sequence[str] | None, tenants: str
) -> tuple[tuple[str, ...], tuple[int, ...], bool]:
    """--backend, --tenants (counts, comma-separated) and --quick: backends, counts, quick."""
    made = parser(module, doc)
    add_backend(made)
    made.add_argument("--tenants", default=tenants, help="comma-separated tenant counts")
    args = made.parse_args(argv)
    return backends(made, args.backend), tenant_counts(made, args.tenants), args.quick


def parser(
    module: str, doc: str | None, quick: str = "a tiny, fast run (for tests)"
) -> argparse.ArgumentParser:
    """A parser for `python -m <module>`, described by the module's docstring, with --quick."""
    made = argparse.ArgumentParser(prog=f"python -m {module}", description=doc)
    made.add_argument("--quick", action="store_true", help=quick)
    return made


def add_backend(parser: argparse.ArgumentParser, *, both: bool = True) -> None:
    """--backend sqlite|postgres, and `both` (the default) unless `both` is False."""
    if both:
        parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="both")
    else:
        parser.add_argument("--backend", choices=BACKENDS, default="sqlite")


def backends(parser: argparse.ArgumentParser, chosen: str) -> tuple[str, ...]:
    """The backends to measure; PostgreSQL is dropped from `both` when it is unreachable."""
    found = BACKENDS if chosen == "both" else (chosen,)
    if "postgres" in found and not postgres_available():
        if chosen != "both":
            parser.error("PostgreSQL is not reachable (set WORKFLOW_AUTHZ_BENCH_PG_URL)")
        print("PostgreSQL is not reachable: measuring SQLite only.", file=sys.stderr)
        found = ("sqlite",)
    return found


def tenant_counts(parser: argparse.ArgumentParser, text: str) -> tuple[int, ...]:
    """Comma-separated positive tenant counts, sorted and unique."""
    try:
        counts = tuple(sorted({int(n) for n in text.split(",")}))
    except ValueError:
        parser.error(f"--tenants must be comma-separated integers, got {text!r}")
    if not counts or counts[0] < 1:
        parser.error("--tenants must be positive")
    return counts


def require_wrk(parser: argparse.ArgumentParser) -> None:
    """Stop with a usage error when Debian's wrk is missing."""
    if not wrk.available():
        parser.error(f"{wrk.WRK} is missing: install Debian's wrk (apt-get install wrk)")


def given(options: Opts, values: Mapping[str, Any]) -> Opts:
    """`options` with every value that was given on the command line (not None)."""
    return replace(options, **{k: v for k, v in values.items() if v is not None})  # type: ignore[type-var]


def options(defaults: Opts, quick: Mapping[str, Any], args: argparse.Namespace) -> Opts:
    """`defaults`, then `quick` under --quick, then each command-line value (not None) whose
    argument is named like a field of the options."""
    names = {f.name for f in fields(defaults)}  # type: ignore[arg-type]
    chosen = given(defaults, quick if args.quick else {})
    return given(chosen, {k: v for k, v in vars(args).items() if k in names})


def positive(kind: Callable[[str], Number]) -> Callable[[str], Number]:
    """An argparse type: the argument read as `kind`, which must be above zero."""

    def positive(text: str) -> Number:  # the name argparse shows: "invalid positive value"
        value = kind(text)
        if not value > 0:
            raise ValueError(text)
        return value

    return positive


def progress() -> Progress:
    """Progress lines on stderr with the seconds elapsed, so stdout holds only the table."""
    start = time.monotonic()
    return lambda line: print(f"[{time.monotonic() - start:6.1f}s] {line}", file=sys.stderr)
