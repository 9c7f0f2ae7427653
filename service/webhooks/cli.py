"""`workflow-authz webhooks`: add, list, remove, rotate-secret and retry a tenant's endpoints.

A thin shell over service.webhooks.endpoints: each command is one transaction, and a refused one
(bad URL or name: exit 2; unknown tenant or endpoint, a URL taken: exit 1) writes nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from service.cli_errors import settings, store_engine
from service.limits import MAX_NUMBER, visible, whole_number
from service.models import iso
from service.policies.store import require_version
from service.webhooks import addresses, endpoints
from service.webhooks.endpoints import Listed


class EndpointId(click.ParamType[int, Any]):
    """An endpoint id: ASCII digits from 1 to what the store's integer holds. click.INT takes
    int()'s spellings too, so `١` (an Arabic-Indic one) would name endpoint 1."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """The id, or a usage error (exit 2) saying what an id is."""
        number = value if isinstance(value, int) else whole_number(str(value))
        if not number:
            self.fail(f"{value!r} is not an endpoint id (1 to {MAX_NUMBER}, in ASCII digits)")
        return number


ENDPOINT_ID = click.argument("endpoint_id", metavar="ID", type=EndpointId())
COLUMNS = ("id", "tenant", "name", "url", "state", "last delivery", "backlog", "note")


@click.group(name="webhooks")
def webhooks_group() -> None:
    """Register the external systems each tenant's feed events are sent to (signed webhooks)."""


@webhooks_group.command(name="add")
@click.option("--tenant", required=True, help="The tenant whose events the endpoint receives.")
@click.option("--url", required=True, help="Where to POST them: an http:// or https:// URL.")
@click.option("--name", help="Who receives them (free text; default: the URL's host).")
def webhooks_add(tenant: str, url: str, name: str | None) -> None:
    """Register an endpoint for the tenant's events from now on; print its id and its signing
    secret, which is shown only this once."""
    allow_private = bool(settings()["WEBHOOK_ALLOW_PRIVATE"])
    with store_engine() as engine, engine.db.write() as conn:
        endpoint_id, secret = endpoints.add(conn, tenant, url, name, allow_private=allow_private)
    stored = addresses.canonical(url)  # the spelling `add` stored
    click.echo(f"Added webhook endpoint {endpoint_id} for tenant {tenant!r}: {stored}")
    click.echo(
        "Its signing secret, shown only now (store it with the receiver; it cannot be shown "
        f"again, `workflow-authz webhooks rotate-secret {endpoint_id}` makes a new one):\n"
    )
    click.echo(f"    {secret}\n")


@webhooks_group.command(name="list")
@click.option("--tenant", help="Only this tenant's endpoints (default: every tenant's).")
def webhooks_list(tenant: str | None) -> None:
    """List endpoints, tab-separated under a header: id, tenant, name, url, state (active,
    failing, disabled), the last delivery attempt (time and HTTP status, or `error`), the
    backlog (events not yet delivered) and a note (why failing or disabled, the last error)."""
    with store_engine() as engine, engine.db.read() as conn:
        if tenant is not None:
            require_version(conn, tenant)
        listed = endpoints.listing(conn, tenant)
    click.echo("\t".join(COLUMNS))
    for endpoint in listed:
        click.echo("\t".join(_columns(endpoint)))


def _columns(e: Listed) -> list[str]:
    """One endpoint's line; free text (name, reasons, errors) as limits.visible shows it."""
    note = " ".join(filter(None, [e.state_reason, e.last_error]))
    return [
        str(e.id),
        e.tenant,
        visible(e.name),
        e.url,
        e.state,
        last_delivery(e),
        str(e.backlog),
        visible(note) or "-",
    ]


def last_delivery(e: Listed) -> str:
    """`2026-12-01T15:00:00.000000Z 200`, `... error` when no status came back, or `never`."""
    if e.last_attempt_at is None:
        return "never"
    return f"{iso(e.last_attempt_at)} {e.last_status if e.last_status is not None else 'error'}"


@webhooks_group.command(name="remove")
@ENDPOINT_ID
def webhooks_remove(endpoint_id: int) -> None:
    """Delete the endpoint: nothing more is sent to it, its backlog is dropped."""
    with store_engine() as engine, engine.db.write() as conn:
        gone = endpoints.remove(conn, endpoint_id)
    click.echo(
        f"Removed webhook endpoint {gone.id} ({visible(gone.name)}, {gone.url}) of tenant "
        f"{gone.tenant!r}; {gone.backlog} undelivered event(s) will not be sent."
    )


@webhooks_group.command(name="rotate-secret")
@ENDPOINT_ID
def webhooks_rotate_secret(endpoint_id: int) -> None:
    """Make a new signing secret and print it once; the current one keeps signing beside it
    for WORKFLOW_AUTHZ_WEBHOOK_SECRET_GRACE seconds, so the receiver can switch over."""
    grace = timedelta(seconds=float(settings()["WEBHOOK_SECRET_GRACE"]))
    with store_engine() as engine, engine.db.write() as conn:
        secret = endpoints.rotate_secret(conn, endpoint_id, grace)
        until = endpoints.find(conn, endpoint_id).previous_secret_until
    click.echo(f"New signing secret of webhook endpoint {endpoint_id}, shown only now:\n")
    click.echo(f"    {secret}\n")
    if grace and until is not None:
        click.echo(
            f"Until {iso(until)} every delivery is signed with the previous secret too "
            "(WORKFLOW_AUTHZ_WEBHOOK_SECRET_GRACE); from then on only with this one."
        )
    else:
        click.echo(
            "The previous secret signs nothing more (WORKFLOW_AUTHZ_WEBHOOK_SECRET_GRACE=0)."
        )


@webhooks_group.command(name="retry")
@ENDPOINT_ID
def webhooks_retry(endpoint_id: int) -> None:
    """Make a failing or disabled endpoint active again (an active one retries at once): its
    kept events are sent from the first one not delivered."""
    with store_engine() as engine, engine.db.write() as conn:
        before = endpoints.retry(conn, endpoint_id)
    was = "was active already; it retries now" if before == "active" else f"was {before}"
    click.echo(f"Webhook endpoint {endpoint_id} is active ({was}).")
