"""The admin blueprint, its CSRF protection, and the names every admin template may use."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, g
from flask_wtf.csrf import CSRFProtect

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
