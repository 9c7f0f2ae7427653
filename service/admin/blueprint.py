"""The admin blueprint, its CSRF protection, and the names every admin template may use."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, g
from flask_wtf.csrf import CSRFProtect
from markupsafe import Markup, escape

from service import matrix
from service.admin.context import workflow

bp = Blueprint(
    "admin",
    __name__,
    url_prefix="/admin",
    static_folder=Path(__file__).resolve().parent.parent / "static",  # service/static
    static_url_path="/static",
)
csrf = CSRFProtect()


@bp.context_processor
def page_helpers() -> dict[str, Any]:
    """Names every admin template may use."""
    return {
        "workflow": workflow(),
        "admin": g.get("admin"),
        "field_name": matrix.field_name,
        "when": when,
        "plural": matrix.plural,
    }


def when(moment: datetime | None) -> str:
    """A timestamp as people read it: '2025-03-01 14:05 UTC'."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


@bp.app_template_filter("visible")
def visible(text: str | None) -> str:
    """Free text with each character limits.FREE_TEXT_RULE refuses (control, bidirectional and
    other format characters, separators) written as its code, `U+202E`: rows older than the rule
    may hold them, and raw they would make the text read otherwise than it is stored."""
    return "".join(c if c.isprintable() else f"U+{ord(c):04X}" for c in text or "")


@bp.app_template_filter("inert")
def inert(text: str | None) -> Markup:
    """Free text as page content: isolated in <bdi>, so even allowed right-to-left text cannot
    reorder what stands beside it, and each refused character a marked `U+202E` token."""
    parts = (
        escape(c) if c.isprintable() else Markup(f'<span class="codepoint">U+{ord(c):04X}</span>')
        for c in text or ""
    )
    return Markup("<bdi>%s</bdi>") % Markup("").join(parts)
