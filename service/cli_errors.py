"""What every `workflow-authz` command shares: the store and policy engine it works on, and the one
mapping of its failures to Click's `Error: ...` on stderr with an exit code (1; 2 for bad usage).

A command never shows a traceback for a fault of its surroundings: a broken model.conf or
workflow.toml, a store that cannot be reached or fails, a bad WORKFLOW_AUTHZ_* value.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from service.config import load_config
from service.db import Database
from service.errors import NotFound, ServiceError, Unavailable
from service.policies import PolicyEngine
from service.workflows import Workflow, load_workflow

# A definition or model that cannot be read or parsed: OSError (missing, unreadable) and ValueError
# (DefinitionError, ModelError, undecodable bytes); the seam turns casbin's errors into ModelError.
LOAD_FAILURES = (OSError, ValueError)
TENANTS_HINT = "`workflow-authz tenants list` shows them"


class CommandError(click.ClickException):
    """`Error: message` on stderr and exit 1: one line (Click's own class, named for this CLI)."""


class BadUsage(CommandError):
    """`Error: message` and exit 2, in one line: unlike click.UsageError, no usage banner, for
    usage Click cannot see (a bad WORKFLOW_AUTHZ_* value, a file of the wrong kind)."""

    exit_code = 2


def failure(message: str, exit_code: int = 1) -> CommandError:
    """The error for this exit code: 2 is bad usage, anything else exits 1."""
    return BadUsage(message) if exit_code == 2 else CommandError(message)


@contextmanager
def reported() -> Iterator[None]:
    """Turn every ServiceError and store failure into a CommandError with its exit code."""
    try:
        yield
    except NotFound as error:
        hint = TENANTS_HINT if error.field == "tenant" else ""
        raise CommandError("; ".join(filter(None, [error.message, hint]))) from None
    except Unavailable as error:
        raise store_failure(error.__cause__ or error) from None
    except ServiceError as error:
        raise failure(error.message, error.exit_code) from None
    except SQLAlchemyError as exc:
        raise store_failure(exc) from None
    except OSError as exc:  # e.g. a store path below a file: mkdir fails before any driver runs
        raise CommandError(f"cannot use {exc.filename or 'the store'}: {exc.strerror}") from None


def store_failure(exc: BaseException) -> CommandError:
    """A store that failed or cannot be reached: the driver's reason; the write never happened."""
    reason = exc.orig if isinstance(exc, DBAPIError) else getattr(exc, "message", exc)
    one_line = " ".join(str(reason).split())  # drivers add hints on lines of their own
    return CommandError(f"the store failed ({one_line}); nothing was written")


def settings() -> dict[str, Any]:
    """The configuration; a bad WORKFLOW_AUTHZ_* value is bad usage (exit 2)."""
    with reported():
        return load_config()


@contextmanager
def store_engine() -> Iterator[PolicyEngine]:
    """The policy engine over the configured store (one connection), disposed afterwards; every
    failure inside, including loading the model and definition, is reported by `reported`."""
    with reported():
        engine = _engine(settings())
        try:
            yield engine
        finally:
            engine.db.dispose()


def _engine(config: dict[str, Any]) -> PolicyEngine:
    """The configured workflow and model over a one-connection store (nothing connects yet)."""
    workflow = definition(config)
    model = Path(config["MODEL_PATH"])
    db = Database(config["DATABASE_URL"], 1, config["STORE_TIMEOUT"])
    try:
        with loading("model", model):
            return PolicyEngine(db, workflow, model, 1)
    except CommandError:
        db.dispose()
        raise


def definition(config: dict[str, Any]) -> Workflow:
    """The configured workflow definition; an error naming the file when it cannot be used."""
    path = Path(config["POLICY_DIR"]) / "workflow.toml"
    with loading("workflow definition", path):
        return load_workflow(path)


@contextmanager
def loading(what: str, path: Path) -> Iterator[None]:
    """A file that cannot be loaded: which file, why, and the command that shows where."""
    try:
        yield
    except LOAD_FAILURES as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        hint = "" if isinstance(exc, OSError) else " (`workflow-authz check` shows where)"
        raise CommandError(f"cannot load the {what} {path}: {reason}{hint}") from None
