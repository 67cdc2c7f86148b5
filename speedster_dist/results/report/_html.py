"""What the report's sections share: time formats and HTML tables (latencies read as in the
terminal: :func:`speedster_dist.present.ms`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from typing import Any

__all__ = ["Row", "table", "when"]

Row = Mapping[str, Any]


def when(row: Row) -> str:
    moment: datetime = row["time"]
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], css_id: str = "") -> str:
    """Cells are HTML (escape them first); headers are text."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    ident = f' id="{css_id}"' if css_id else ""
    return f"<table{ident}><tr>{head}</tr>{body}</table>"
