"""Webhooks: every feed event sent to the tenant's registered endpoints, signed per the Standard
Webhooks specification, at least once and in feed order per endpoint.

- `endpoints`: registering, listing, removing endpoints, rotating their secrets, retrying a
  failing one; what an endpoint's signing secrets are at a moment (the rotation grace).
- `addresses`: which URLs may be delivered to (http/https, one reading for every program; no
  loopback, link-local or private address unless the operator allows it), checked when added
  and again on every connection.
- `delivery`: the loop that leases an endpoint, sends its next event, and records the outcome.
- `cli`: `workflow-authz webhooks`, the operator's commands over `endpoints`.

The outbox is the feed itself: events are written in the transaction of the change that causes
them (events.py), and each endpoint keeps its place in that feed (models.WebhookEndpoint).
"""
