"""What the report's sections share: the history row and its time format (latencies read as
in the terminal: :func:`speedster_dist.present.ms`). The HTML itself is in ``templates/``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

__all__ = ["Row", "when"]

Row = Mapping[str, Any]


def when(row: Row) -> str:
    moment: datetime = row["time"]
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
