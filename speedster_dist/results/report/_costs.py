"""The report's cost section: per model, each hardware type's best trial priced (cost per 1M
inferences), the fastest and the cheapest type, and the latency/cost frontier as a static SVG
drawn by matplotlib (the ``report`` extra; without it the section has the tables only)."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from markupsafe import Markup

from speedster_dist.cost import (
    CostRow,
    PriceTable,
    Served,
    basis_note,
    cost_per_million,
    cost_rows,
    fastest_and_cheapest,
    frontier,
)
from speedster_dist.present import ms
from speedster_dist.results._regress import candidate_label
from speedster_dist.results.report._charts import TEXT_AS_GIVEN
from speedster_dist.results.report._html import Row
from speedster_dist.results.report._templates import render

__all__ = ["FRONTIER_COLOR", "POINT_COLOR", "cost_column", "cost_section", "served_row"]

FRONTIER_COLOR = "#d62728"  # the frontier line and its points
POINT_COLOR = "#1f77b4"  # every priced hardware type


def _measured(row: Row) -> bool:
    """Whether the row's throughput was measured at a load point (else: batch / p50)."""
    return row.get("load_batch_size") is not None and bool(row.get("throughput"))


def _better(row: Row, kept: Row) -> bool:
    """A load point serving more beats any row; among one-call rows, the lower p50."""
    if _measured(row) or _measured(kept):
        rank = (_measured(row), row.get("throughput") or 0.0)
        return rank > (_measured(kept), kept.get("throughput") or 0.0)
    return bool(row["latency_p50_s"] < kept["latency_p50_s"])


def _best_per_type(rows: Sequence[Row]) -> dict[str, dict[str, tuple[Row, str | None]]]:
    """model -> hardware type -> its best complete trial (and its node group): the feasible
    load point serving the most when load points were measured, else the lowest p50.

    Trials only: a confirmation re-times trials already here (role ``confirmed``), and the
    faster of two measurements of one candidate would flatter it."""
    best: dict[str, dict[str, tuple[Row, str | None]]] = defaultdict(dict)
    for row in rows:
        p50 = row.get("latency_p50_s")
        if row.get("status") != "complete" or not p50 or row.get("role") == "confirmed":
            continue
        kept = best[row["model_name"]].get(row["hardware_type"])
        if kept is None or _better(row, kept[0]):
            best[row["model_name"]][row["hardware_type"]] = (row, row.get("node_group"))
    return best


def served_row(row: Row, group: str | None = None) -> Served:
    """A history row as priced: its measured throughput at its load point, else derived
    from its p50 (calls of ``batch_size`` samples back to back)."""
    label = candidate_label(row)
    if not _measured(row):
        batch = int(row.get("batch_size") or 1)
        return Served.from_p50(row["hardware_type"], label, row["latency_p50_s"], group, batch)
    return Served(
        row["hardware_type"],
        label,
        float(row["throughput"]),
        measured=True,
        p50_s=row.get("latency_p50_s"),
        node_group=group,
        point=f"{row['load_batch_size']}x{row.get('concurrency')}",
        tail_s=row.get("latency_tail_s"),
    )


def _priced(winners: Mapping[str, tuple[Row, str | None]], prices: PriceTable) -> list[CostRow]:
    return cost_rows([served_row(row, group) for row, group in winners.values()], prices)


def frontier_svg(rows: list[CostRow], title: str) -> str:
    """Latency (x) against cost per 1M (y) of every priced type, the frontier joined. Names
    are drawn as given (no mathtext: a ``$`` in a hardware type or model is text)."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global figure, no backend switched

    priced = [r for r in rows if r.cost_per_1m is not None]
    edge = frontier(priced)
    with matplotlib.rc_context(TEXT_AS_GIVEN):  # type: ignore[arg-type]  # keys typed as Literal
        figure = Figure(figsize=(6.4, 4.0), dpi=100)
        axes = figure.add_subplot()
        xs = [(r.p50_s or 0.0) * 1e3 for r in priced]
        ys = [r.cost_per_1m or 0.0 for r in priced]
        axes.scatter(xs, ys, s=60, color=POINT_COLOR, zorder=2, label="hardware type")
        axes.plot(
            [(r.p50_s or 0.0) * 1e3 for r in edge],
            [r.cost_per_1m or 0.0 for r in edge],
            color=FRONTIER_COLOR,
            linewidth=3,
            marker="o",
            markersize=9,
            zorder=3,
            label="frontier (no type is both faster and cheaper)",
        )
        for row in priced:
            axes.annotate(
                row.hardware_type,
                ((row.p50_s or 0.0) * 1e3, row.cost_per_1m or 0),
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
            )
        axes.set_xlabel("latency p50 (ms)")
        axes.set_ylabel("cost per 1M inferences")
        axes.set_title(title, fontsize=10)
        axes.legend(fontsize=7)
        axes.grid(alpha=0.3)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline: no XML prolog inside the page


_HEADERS = [
    "hardware type",
    "winner",
    "p50",
    "throughput/s",
    "throughput from",
    "price/h",
    "cost per 1M",
    "",
]


def _table_rows(rows: list[CostRow], prices: PriceTable) -> list[list[str]]:
    """The priced types as text, fastest first, the fastest and the cheapest marked."""
    fastest, cheapest = fastest_and_cheapest(rows)
    lines = []
    for row in sorted(rows, key=lambda r: (r.p50_s is None, r.p50_s or 0.0)):
        marks = [m for m, r in (("fastest", fastest), ("cheapest", cheapest)) if r is row]
        cost = f"{row.cost_per_1m:.4g} {prices.currency}" if row.cost_per_1m is not None else "-"
        price = f"{row.price_per_hour:g}" if row.price_per_hour is not None else "no price"
        lines.append(
            [
                row.hardware_type,
                row.label,
                ms(row.p50_s),
                f"{row.throughput_per_s:.4g}",
                row.basis,
                price,
                cost,
                ", ".join(marks),
            ]
        )
    return lines


def cost_column(prices: PriceTable) -> tuple[str, Callable[[Any], str]]:
    """The winners table's cost column: a winner's cost per 1M inferences at its measured
    throughput (its load point), or at the throughput derived from its p50 ("from p50"), on
    one node of its group (or hardware type) at the given price; "-" when unpriced."""

    def cell(winner: Any) -> str:
        row = winner.row
        price = prices.price(str(row["hardware_type"]), row.get("node_group"))
        rate = served_row(row).throughput_per_s if row.get("latency_p50_s") else None
        if price is None or not rate:
            return "-"
        cost = cost_per_million(rate, price)
        basis = "" if _measured(row) else " (from p50)"
        return f"{cost:.3g} {prices.currency}{basis}"

    return (f"cost per 1M ({prices.currency})", cell)


def _chart(rows: list[CostRow], model: str) -> Markup | str | None:
    """The frontier plot (matplotlib's SVG); "" when nothing is priced, None without
    matplotlib (the page says how to get it)."""
    if not any(r.cost_per_1m is not None for r in rows):
        return ""
    try:
        return Markup(frontier_svg(rows, f"{model}: latency and cost"))  # text escaped by it
    except ImportError:  # matplotlib is the `report` extra
        return None


def cost_section(history: Sequence[Row], prices: PriceTable | None) -> Markup | None:
    """The section's HTML (``templates/costs.html.j2``), or None without prices (the report
    then has no such section)."""
    if prices is None:
        return None
    models = []
    for model, winners in sorted(_best_per_type(history).items()):
        rows = _priced(winners, prices)
        if rows:
            table = _table_rows(rows, prices)
            chart = _chart(rows, model)
            models.append({"name": model, "rows": table, "chart": chart, "basis": basis_note(rows)})
    return render(
        "costs.html.j2",
        source=prices.source or "given",
        currency=prices.currency,
        headers=_HEADERS,
        models=models,
    )
