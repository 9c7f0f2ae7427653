"""What each kind of value may be: how long (what the API and the CLI accept is what the schema
holds), and which characters free text may hold."""

from __future__ import annotations

import unicodedata

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
MAX_DEPTH = 32
"""How deeply a JSON body may nest objects and arrays: the deepest body the API declares nests
5 levels (an AuthZEN boxcar item's subject properties), which leaves room for a context."""
MAX_NUMBER = 2**31 - 1
"""The largest whole number the tables hold (their columns are PostgreSQL `integer`, 32 bits):
an event number in a cursor, a policy version in a form; a larger one makes PostgreSQL refuse
the whole query, not just find nothing."""
MAX_OFFSET = 2**63 - 1
"""The most rows a query may skip (LIMIT and OFFSET take a signed 64-bit integer)."""
MAX_URL = 2000
"""A webhook endpoint's URL (what browsers and most servers accept)."""
MAX_SECRET = 100
"""A webhook signing secret as stored: `whsec_` and the base64 of its 24 to 64 bytes."""

FREE_TEXT_RULE = "printable characters in Unicode normal form NFC, not only blanks"
"""What free text that people read later (an actor, a reason) may hold, in words.

Printable refuses control characters (Unicode category Cc) and format characters (Cf: the
bidirectional embeddings, overrides and isolates U+202A-202E and U+2066-2069, the marks
U+200E/200F, zero-width characters), which make the text read otherwise than it is stored, and
separators other than the space. NFC makes one spelling one string, so a filter by person finds
every row of that person. A look-alike is not refused: `аdmin` with a Cyrillic а is printable NFC
text. What proves who acted is the API key the service records beside every actor, never the
actor's spelling, which is only what the caller says."""

_KINDS = {
    "Cc": "a control character",
    "Cf": "a format character",
    "Zs": "a space other than U+0020",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Co": "a private-use character",
    "Cs": "a surrogate",
    "Cn": "an unassigned code point",
}


def free_text_problem(value: str) -> str | None:
    """Why `value` is not free text (FREE_TEXT_RULE), naming the first character at fault as
    U+XXXX and its position; None when it is."""
    if not value.strip():
        return "must not be blank"
    for position, char in enumerate(value, 1):
        if not char.isprintable():
            category = unicodedata.category(char)
            return (
                f"must not hold {_named(char)} (character {position}), "
                f"{_KINDS.get(category, 'not printable')} (Unicode category {category})"
            )
    if not unicodedata.is_normalized("NFC", value):
        position = _unnormalised_from(value)
        return (
            f"must be in Unicode normal form NFC, which it stops being at "
            f"{_named(value[position - 1])} (character {position}): send the text composed (NFC)"
        )
    return None


def visible(text: str) -> str:
    """The text with each character FREE_TEXT_RULE refuses written as its code, `U+202E`: text
    stored before the rule may hold some, and raw they would make it read otherwise than it is
    stored, on a page or a terminal (an escape sequence)."""
    return "".join(c if c.isprintable() else f"U+{ord(c):04X}" for c in text)


def text_problem(value: str, limit: int) -> str | None:
    """Why `value` is not free text of 1 to `limit` characters (FREE_TEXT_RULE), for the shells
    outside the JSON API's shapes (the CLI's names and actors); None when it is."""
    if len(value) > limit:
        return f"must be at most {limit} characters, not {len(value)}"
    return free_text_problem(value)


def whole_number(text: str, most: int = MAX_NUMBER) -> int | None:
    """`text` as a whole number when it is ASCII digits of at most `most`; None otherwise.
    Python's int() also takes other scripts' digits (`١٢`), signs, blanks and underscores."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(most)):
        return None
    number = int(text)
    return number if number <= most else None


def storable(value: str) -> bool:
    """True when both stores can hold `value` as text: PostgreSQL refuses U+0000 in any text,
    and a lone surrogate has no UTF-8 encoding."""
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _named(char: str) -> str:
    """`U+202E RIGHT-TO-LEFT OVERRIDE`, or the code alone when the character has no name."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X} {name}" if name else f"U+{ord(char):04X}"


def _unnormalised_from(value: str) -> int:
    """The position (from 1) of the character that ends the shortest prefix not in NFC: the
    combining mark of `e\\u0301`, not the `e` it combines with."""
    return next(
        end for end in range(1, len(value) + 1) if not unicodedata.is_normalized("NFC", value[:end])
    )
