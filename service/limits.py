"""How long each kind of value may be: what the API and the CLI accept is what the schema holds."""

MAX_IDENTIFIER = 64
"""Ids of tenants, roles, areas, phases, actions and admin usernames."""
MAX_ASSESSMENT_ID = 128
"""An assessment id, and a batch item's id."""
MAX_TEXT = 200
"""Free text written to the store: an actor, a key's name, who changed a policy."""
MAX_REASON = 500
"""Why an assessment was reopened."""
MAX_BATCH = 1000
"""Questions in one /authorize/batch, ids in one bulk advance."""
MAX_PAGE = 1000
"""Events in one page of the feed, results in one page of an AuthZEN search."""
MAX_TOKEN = 512
"""An AuthZEN search's page token (it holds an assessment id)."""
