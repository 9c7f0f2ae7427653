"""The admin blueprint, its CSRF protection, and the names every admin template may use."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, g
from flask_wtf.csrf import CSRFProtect
from markupsafe import Markup, escape

from service import limits, matrix
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
    """Free text for an attribute: limits.visible (each character FREE_TEXT_RULE refuses as its
    code), so rows older than the rule read as they are stored."""
    return limits.visible(text or "")


@bp.app_template_filter("inert")
def inert(text: str | None) -> Markup:
    """Free text as page content: isolated in <bdi>, so even allowed right-to-left text cannot
    reorder what stands beside it, and each character limits.visible writes as its code a marked
    `U+202E` token."""
    tokens = ((c, limits.visible(c)) for c in text or "")
    parts = (
        escape(c) if shown == c else Markup('<span class="codepoint">%s</span>') % shown
        for c, shown in tokens
    )
    return Markup("<bdi>%s</bdi>") % Markup("").join(parts)
