"""What a winner costs to serve: a price table turns throughput into cost per 1M inferences.

A price table (``prices.yaml``, see cluster/prices.example.yaml) maps node groups or
hardware types to a price per hour. One million inferences on one node cost
``price_per_hour / 3600 * 1e6 / throughput``, where ``throughput`` is the inferences a
second **measured at the winner's operating point** (its batch size and requests in flight:
a throughput or cost objective's load point). A run that measured no load point (the
latency objective: one call at a time) has only one call's p50; its throughput is then
derived, ``batch / p50``, and every table says so (:attr:`CostRow.measured`,
:func:`basis_note`) rather than mixing the two silently. Pure Python, no heavy import: the
summary, ``LearnerMetadata.describe()`` and the HTML report all use it.
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
    "Served",
    "basis_note",
    "cost_per_million",
    "cost_rows",
    "derived_throughput",
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


def cost_per_million(inferences_per_s: float, price_per_hour: float) -> float:
    """The cost of 1M inferences on one node serving ``inferences_per_s``."""
    return price_per_hour / 3600.0 * 1e6 / inferences_per_s


def derived_throughput(p50_s: float, batch_size: int = 1) -> float:
    """Inferences a second of calls of ``batch_size`` samples back to back, one at a time:
    what a run that measured no load point (the latency objective) can say."""
    return batch_size / p50_s


@dataclass(frozen=True)
class Served:
    """What one hardware type's winner serves, for pricing.

    ``throughput_per_s``: inferences a second; ``measured`` true when it is the rate
    measured at the winner's operating point (a throughput or cost objective), false when it
    is derived from one call's p50 (:func:`derived_throughput`). ``p50_s``: the latency
    ranked as "fastest" (a load point's per-request p50, else one call's); ``point``: the
    operating point's label ("8x2"), empty for one call at a time."""

    hardware_type: str
    label: str
    throughput_per_s: float | None
    measured: bool = False
    p50_s: float | None = None
    node_group: str | None = None
    point: str = ""
    tail_s: float | None = None

    @classmethod
    def from_p50(
        cls, key: str, label: str, p50_s: float | None, group: str | None, batch_size: int = 1
    ) -> Served:
        """A winner of which only one call's p50 is known: throughput derived from it."""
        rate = derived_throughput(p50_s, batch_size) if p50_s and p50_s > 0 else None
        return cls(key, label, rate, False, p50_s, group)


@dataclass(frozen=True)
class CostRow:
    """One hardware type's winner, priced (``cost_per_1m`` None when it has no price).

    ``measured``: the throughput was measured at the operating point ``point``; false: it
    is derived from the p50 (``batch / p50``, one call at a time), as reports must say."""

    hardware_type: str
    label: str
    p50_s: float | None
    throughput_per_s: float
    price_per_hour: float | None
    cost_per_1m: float | None
    measured: bool = False
    point: str = ""
    tail_s: float | None = None

    @property
    def basis(self) -> str:
        """How the throughput was obtained, in words, for every table that prices it."""
        if self.measured:
            return f"measured at {self.point}" if self.point else "measured"
        return "derived from p50"


def cost_rows(winners: Iterable[Served], prices: PriceTable) -> list[CostRow]:
    """Each winner with a throughput, priced by its node group or hardware type."""
    rows = []
    for won in winners:
        rate = won.throughput_per_s
        if not rate or rate <= 0 or not math.isfinite(rate):
            continue
        price = prices.price(won.hardware_type, won.node_group)
        cost = cost_per_million(rate, price) if price is not None else None
        rows.append(
            CostRow(
                won.hardware_type,
                won.label,
                won.p50_s,
                rate,
                price,
                cost,
                won.measured,
                won.point,
                won.tail_s,
            )
        )
    return rows


def _latency(row: CostRow) -> float:
    return row.p50_s if row.p50_s is not None else math.inf


def fastest_and_cheapest(rows: list[CostRow]) -> tuple[CostRow | None, CostRow | None]:
    """The row of the lowest p50, and the priced row of the least cost per 1M."""
    fastest = min((r for r in rows if r.p50_s is not None), key=_latency, default=None)
    priced = [r for r in rows if r.cost_per_1m is not None]
    cheapest = min(priced, key=lambda r: (r.cost_per_1m, _latency(r)), default=None)
    return fastest, cheapest


def basis_note(rows: Iterable[CostRow]) -> str:
    """One sentence on where the rows' throughputs come from (never a silent mix)."""
    kinds = {row.measured for row in rows}
    if kinds == {True}:
        return "throughput measured at each winner's operating point"
    if kinds == {False}:
        return "throughput derived from p50 (calls back to back, one at a time: no load measured)"
    return (
        "throughput measured at the operating point where one was measured, else derived "
        "from p50 (marked): the two are not alike"
    )


def frontier(rows: list[CostRow]) -> list[CostRow]:
    """The priced rows no other row beats on both latency and cost, fastest first."""
    priced = sorted((r for r in rows if r.cost_per_1m is not None), key=_latency)
    kept: list[CostRow] = []
    for row in priced:
        assert row.cost_per_1m is not None
        if not kept or row.cost_per_1m < (kept[-1].cost_per_1m or math.inf):
            kept.append(row)
    return kept
