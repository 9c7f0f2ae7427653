"""Pages of a search: opaque tokens bound to the search's parameters, and keyset paging.

A token names the page after a result's id (keyset: never an offset), so a walk neither repeats
nor skips a result that stays in the result set while others join or leave it. It carries its
page's limit and a digest of the search's parameters: the same token with other parameters is
refused, as the AuthZEN standard asks (the binding is a check, not a secret: whoever may search
may search anything the key allows anyway).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service import shapes
from service.errors import InvalidRequest
from service.limits import MAX_PAGE, storable, whole_number

DEFAULT_LIMIT = 100
NOT_OURS = "page.token is not a token this search gave for these parameters"


@dataclass(frozen=True)
class Page:
    """One page of a search: its parameters' digest, its length and the id it starts after."""

    binding: str
    limit: int
    after: str | None = None

    def answer(self, found: Sequence[str]) -> tuple[Sequence[str], shapes.PageAnswer]:
        """Up to limit + 1 ids found after `after`: this page's ids and its page object, whose
        token ("" after the last page) continues after this page's last id."""
        ids = found[: self.limit]
        more = len(found) > self.limit
        token = encode_token(self.binding, self.limit, ids[-1]) if more else ""
        return ids, shapes.PageAnswer(next_token=token, count=len(ids))


def start(parameters: Any, token: str | None, limit: int | None) -> Page:
    """The page asked for: the first (of `limit`, else DEFAULT_LIMIT, results) without a token,
    else the token's; InvalidRequest for a token of other parameters, or another limit (the
    token's limit holds when `limit` is left out, as in the standard's example)."""
    binding = _digest(parameters)
    if token is None or token == "":
        return Page(binding, limit or DEFAULT_LIMIT)
    page = decode_token(binding, token)
    if limit is not None and limit != page.limit:
        raise InvalidRequest(
            f"page.limit must stay {page.limit}, the limit of the search this token continues",
            field="page.limit",
        )
    return page


def _digest(parameters: Any) -> str:
    """A short digest of a search's parameters (JSON data), which its tokens carry."""
    text = json.dumps(parameters, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_token(binding: str, limit: int, after: str) -> str:
    """An opaque token: the page after `after`, of `limit` results, of the search `binding`."""
    raw = f"v1:{binding}:{limit}:{after}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(binding: str, token: str) -> Page:
    """The page a token stands for; InvalidRequest unless this search gave it."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        version, owner, limit, after = raw.split(":", 3)
        size = whole_number(limit, MAX_PAGE)
        if version != "v1" or owner != binding or not size or not after or not storable(after):
            raise ValueError(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest(NOT_OURS, field="page.token") from None
    return Page(binding, size, after)


def following(page: Page, found: Sequence[str], universe: Sequence[str]) -> Sequence[str]:
    """Of `found` (in the order of `universe`), those after the page's start: the keyset of a
    small list computed whole (roles, actions, phases in the definition's order)."""
    if page.after is None:
        return found
    rank = {value: i for i, value in enumerate(universe)}
    first = rank.get(page.after)
    if first is None:
        raise InvalidRequest(NOT_OURS, field="page.token")
    return [value for value in found if rank[value] > first]
