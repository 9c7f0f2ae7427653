"""Every problem code the checker reports, with its one-line title.

Codes are stable: CI logs, suppression lists and the README refer to them, so a code is
never renumbered or reused. WA0xx files, WA1xx model.conf, WA2xx workflow.toml, WA3xx policy CSVs,
WA4xx decision test cases.
"""

from __future__ import annotations

from collections.abc import Mapping

CODES: Mapping[str, str] = {
    "WA001": "file cannot be read",
    "WA002": "file is not UTF-8",
    "WA003": "file contains a NUL byte",
    "WA004": "file is larger than 10 MiB",
    "WA005": "file is empty",
    "WA006": "file starts with a byte order mark",
    "WA101": "model does not parse",
    "WA102": "model lacks a section or definition",
    "WA103": "model has an unexpected or repeated definition",
    "WA104": "request definition is not tenant, role, area, phase, action",
    "WA105": "policy definition is not tenant, role, area, phase, action",
    "WA106": "matcher is not exact equality on every field",
    "WA107": "effect is not some-allow",
    "WA201": "definition is not valid TOML",
    "WA202": "definition lacks a key or a value has the wrong type",
    "WA203": "definition id is not an identifier",
    "WA204": "definition id is defined twice",
    "WA205": "area has no phases",
    "WA206": "role kind is neither audience nor staff",
    "WA207": "role catalogue lacks an audience or a staff role",
    "WA208": "responsible role is not in the catalogue",
    "WA209": "responsible role missing on a non-final phase or set on the final phase",
    "WA210": "responsible role is an audience",
    "WA211": "actions are not view, edit, advance (optionally followed by reopen)",
    "WA212": "definition has an unknown key",
    "WA213": "a role that is not an audience, or more than one role, receives the feed",
    "WA301": "policy row has the wrong number of fields",
    "WA302": "policy row type is not p",
    "WA303": "policy row has an empty field",
    "WA304": "policy row spacing is not canonical",
    "WA305": "policy value is not a lowercase identifier",
    "WA306": "policy names an unknown role",
    "WA307": "policy names an unknown area",
    "WA308": "policy names a phase the area does not have",
    "WA309": "policy names an unknown action",
    "WA310": "policy row is a duplicate",
    "WA311": "non-final phase has no advance row",
    "WA312": "phase has more than one advance row",
    "WA313": "final phase has an advance row",
    "WA314": "audience may edit, advance or reopen",
    "WA315": "policy file has no rows",
    "WA316": "tenant has rows in more than one policy file",
    "WA317": "first phase has a reopen row",
    "WA401": "cases file lacks the header row",
    "WA402": "case row has the wrong number of fields",
    "WA403": "case row has an empty field",
    "WA404": "case expectation is neither allow nor deny",
    "WA405": "case names an invalid or unknown identifier",
    "WA406": "case name is used twice",
    "WA407": "cases file has no cases",
}
