"""What a winner costs to serve: a price table turns throughput into cost per 1M inferences.

A price table (``prices.yaml``, see cluster/prices.example.yaml) maps node groups or
hardware types to a price per hour. A winner measured at ``p50`` seconds per call of
``batch`` samples serves ``batch / p50`` inferences per second on one node, so one million
inferences cost ``price_per_hour / 3600 * 1e6 / (batch / p50)``. Pure Python, no heavy
import: the summary, ``LearnerMetadata.describe()`` and the HTML report all use it.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

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


@functools.cache
def _price_file() -> Any:
    """The prices file's shape, a pydantic model built on first use (this module is on the
    load path, which must not import pydantic)."""
    from pydantic import BaseModel, ConfigDict, Field

    price = Annotated[float, Field(gt=0, allow_inf_nan=False)]

    class PriceFile(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        prices: dict[str, price] = Field(min_length=1)
        currency: str = "USD"
        source: str = ""

    return PriceFile


def _price_message(error: Any) -> str:
    """One of pydantic's errors, said for a price table: which entry or key, and what to give."""
    loc, kind, given = tuple(error["loc"]), error["type"], error["input"]
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[0]), ["prices", "currency", "source"], n=1)
        guess = f": did you mean {close[0]!r}?" if close else ": allowed: prices, currency, source"
        return f"unknown key {loc[0]!r}{guess}"
    if loc[0] == "prices" and len(loc) == 1:
        return "'prices' must map node groups or hardware types to prices"
    if loc[0] == "prices" and loc[-1] == "[key]":
        return f"the name {loc[1]!r} must be text (quote it)"
    if loc[0] == "prices":
        return f"the price of {loc[1]!r} must be a number > 0, got {given!r}"
    return f"{loc[0]}={given!r} is invalid: give it as text"


def parse_prices(raw: Any, where: str = "the price table") -> PriceTable:
    """``{"prices": {name: per_hour, ...}, "currency": ..., "source": ...}`` (or a bare
    ``{name: per_hour}`` mapping) as a :class:`PriceTable`; PriceError names what is wrong:
    an unknown key (with the closest known one), a price that is not a number > 0 (text,
    a boolean, NaN, infinity), a currency that is not text."""
    if not isinstance(raw, Mapping):
        raise PriceError(f"{where} must be a mapping of node group or hardware type -> price")
    from pydantic import ValidationError

    wrapped = dict(raw) if "prices" in raw else {"prices": dict(raw)}
    try:
        parsed = _price_file().model_validate(wrapped)
    except ValidationError as exc:
        reasons = "; ".join(_price_message(error) for error in exc.errors())
        raise PriceError(f"{where}: {reasons}") from None
    return PriceTable(dict(parsed.prices), parsed.currency, parsed.source)


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
