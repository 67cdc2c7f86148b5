"""What a winner costs to serve: a price table turns throughput into cost per 1M inferences.

A price table (``prices.yaml``, see cluster/prices.example.yaml) maps node groups or
hardware types to a price per hour. A winner measured at ``p50`` seconds per call of
``batch`` samples serves ``batch / p50`` inferences per second on one node, so one million
inferences cost ``price_per_hour / 3600 * 1e6 / (batch / p50)``. Pure Python, no heavy
import: the summary, ``LearnerMetadata.describe()`` and the HTML report all use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speedster_dist.errors import PriceError

__all__ = [
    "CostRow",
    "PriceTable",
    "cost_per_million",
    "cost_rows",
    "fastest_and_cheapest",
    "frontier",
    "load_prices",
    "parse_prices",
]


@dataclass(frozen=True)
class PriceTable:
    """Prices per hour of one node, by node group or hardware type."""

    per_hour: Mapping[str, float]
    currency: str = "USD"
    source: str = ""

    def price(self, hardware_key: str, node_group: str | None = None) -> float | None:
        """The node group's price, else the hardware type's, else None (unpriced)."""
        if node_group and node_group in self.per_hour:
            return self.per_hour[node_group]
        return self.per_hour.get(hardware_key)


def parse_prices(raw: Any, where: str = "the price table") -> PriceTable:
    """``{"prices": {name: per_hour, ...}, "currency": ..., "source": ...}`` (or a bare
    ``{name: per_hour}`` mapping) as a :class:`PriceTable`; PriceError says what is wrong."""
    if not isinstance(raw, Mapping):
        raise PriceError(f"{where} must be a mapping of node group or hardware type -> price")
    prices = raw.get("prices", raw) if "prices" in raw else raw
    if not isinstance(prices, Mapping) or not prices:
        raise PriceError(f"{where}: 'prices' must map node groups or hardware types to prices")
    per_hour = {}
    for name, value in prices.items():
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(float(value)) or float(value) <= 0:
            raise PriceError(f"{where}: the price of {name!r} must be a number > 0, got {value!r}")
        per_hour[str(name)] = float(value)
    return PriceTable(per_hour, str(raw.get("currency", "USD")), str(raw.get("source", "")))


def load_prices(path: str | Path) -> PriceTable:
    """Read a ``prices.yaml`` (see cluster/prices.example.yaml)."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PriceError(f"cannot read the price table {path}: {exc}") from exc
    return parse_prices(raw, str(path))


def cost_per_million(p50_s: float, batch_size: int, price_per_hour: float) -> float:
    """The cost of 1M inferences on one node serving calls of ``batch_size`` back to back."""
    per_second = batch_size / p50_s
    return price_per_hour / 3600.0 * 1e6 / per_second


@dataclass(frozen=True)
class CostRow:
    """One hardware type's winner, priced (``cost_per_1m`` None when it has no price)."""

    hardware_type: str
    label: str
    p50_s: float
    throughput_per_s: float
    price_per_hour: float | None
    cost_per_1m: float | None


def cost_rows(
    winners: Iterable[tuple[str, str, float | None, str | None]],
    prices: PriceTable,
    batch_size: int = 1,
) -> list[CostRow]:
    """``winners``: (hardware type, label, p50 seconds, node group or None) per type."""
    rows = []
    for key, label, p50, group in winners:
        if not p50 or p50 <= 0:
            continue
        price = prices.price(key, group)
        cost = cost_per_million(p50, batch_size, price) if price is not None else None
        rows.append(CostRow(key, label, p50, batch_size / p50, price, cost))
    return rows


def fastest_and_cheapest(rows: list[CostRow]) -> tuple[CostRow | None, CostRow | None]:
    fastest = min(rows, key=lambda r: r.p50_s, default=None)
    priced = [r for r in rows if r.cost_per_1m is not None]
    cheapest = min(priced, key=lambda r: (r.cost_per_1m, r.p50_s), default=None)
    return fastest, cheapest


def frontier(rows: list[CostRow]) -> list[CostRow]:
    """The priced rows no other row beats on both latency and cost, fastest first."""
    priced = sorted((r for r in rows if r.cost_per_1m is not None), key=lambda r: r.p50_s)
    kept: list[CostRow] = []
    for row in priced:
        assert row.cost_per_1m is not None
        if not kept or row.cost_per_1m < (kept[-1].cost_per_1m or math.inf):
            kept.append(row)
    return kept
