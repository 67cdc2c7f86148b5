"""The report's serving section: per model, each hardware type's frontier (throughput against
the budget's tail latency, from the load points of its latest throughput or cost search)
drawn with the SLO line, each type's best-latency and best feasible throughput point, and,
with prices, the cheapest hardware type at the SLO (cost per 1M inferences at the
throughput measured there).

Rows come from the history: load-point trials (``load_batch_size`` not null) that were
measured in full (complete: within the constraints; infeasible: over them, still on the
frontier past the SLO), of the latest search of each model and hardware type (a fleet's
types may be searched by different runs: a sweep, then a nightly search of a type that
joined). The chart is matplotlib's static SVG (the ``report`` extra)."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from speedster_dist.cost import PriceTable, cost_per_million
from speedster_dist.present import ms
from speedster_dist.results._regress import candidate_label
from speedster_dist.results._winners import search_groups
from speedster_dist.results.report._charts import PALETTE, TEXT_AS_GIVEN
from speedster_dist.results.report._html import Row
from speedster_dist.results.report._templates import render
from speedster_dist.serving import FrontierPoint, LoadPoint, pareto_front

__all__ = ["SLO_COLOR", "TypeFrontier", "frontier_section", "model_frontiers"]

SLO_COLOR = "#555555"  # the latency budget's vertical line
_MEASURED = ("complete", "infeasible")
_TRIALS = ("candidate", "baseline")


@dataclass(frozen=True)
class TypeFrontier:
    """One hardware type's load points of one search (throughput in inferences a second)."""

    hardware_type: str
    points: tuple[FrontierPoint, ...]  # every measured point
    node_group: str | None = None

    @property
    def frontier(self) -> tuple[FrontierPoint, ...]:
        return pareto_front(self.points)

    @property
    def best_latency(self) -> FrontierPoint:
        return min(self.points, key=lambda p: (p.tail_s, -p.throughput))

    @property
    def best_feasible(self) -> FrontierPoint | None:
        feasible = [p for p in self.points if p.feasible]
        return max(feasible, key=lambda p: (p.throughput, -p.tail_s), default=None)


def _point(row: Row) -> FrontierPoint:
    batch, flight = int(row["load_batch_size"]), int(row.get("concurrency") or 1)
    return FrontierPoint(
        label=f"{candidate_label(row)} @ {batch}x{flight}",
        point=LoadPoint(batch, flight),
        throughput=float(row["throughput"]),
        tail_s=float(row["latency_tail_s"]),
        p99_s=float(row.get("latency_p99_s") or row["latency_tail_s"]),
        percentile=float(row.get("latency_percentile") or 99.0),
        memory_mb=row.get("rss_delta_mb"),
        feasible=row.get("status") == "complete",
        reason=str(row.get("reason") or ""),
    )


def _load_rows(rows: Sequence[Row]) -> list[Row]:
    return [
        r
        for r in rows
        if r.get("load_batch_size") is not None
        and r.get("status") in _MEASURED
        and r.get("role") in _TRIALS
        and r.get("latency_tail_s") is not None
        and r.get("throughput")
    ]


def _latest(time_of: Sequence[Row]) -> Any:
    return max(r["time"] for r in time_of)


def model_frontiers(rows: Sequence[Row]) -> dict[str, tuple[dict[str, Any], list[TypeFrontier]]]:
    """model -> (the settings of its latest load search, each hardware type's points from
    the latest search that measured that type at load points). Searches only: a nightly
    re-measure of a winner and its baseline is not a search (``search_groups``)."""
    latest: dict[tuple[str, str], list[Row]] = {}
    for (model, _, hardware), runs in search_groups(rows).items():
        for run in runs.values():
            loaded = _load_rows(run)
            kept = latest.get((model, hardware))
            if loaded and (kept is None or _latest(loaded) > _latest(kept)):
                latest[(model, hardware)] = loaded
    by_model: dict[str, list[list[Row]]] = defaultdict(list)
    for (model, _), loaded in sorted(latest.items()):
        by_model[model].append(loaded)
    found = {}
    for model, per_type in by_model.items():
        newest = max(per_type, key=_latest)
        settings = json.loads(newest[0].get("settings") or "{}")
        types = [
            TypeFrontier(r[0]["hardware_type"], tuple(_point(x) for x in r), r[0].get("node_group"))
            for r in per_type
        ]
        found[model] = (settings, types)
    return found


def _cost(kind: TypeFrontier, prices: PriceTable | None) -> float | None:
    best = kind.best_feasible
    price = prices.price(kind.hardware_type, kind.node_group) if prices else None
    if best is None or price is None:
        return None
    return cost_per_million(best.throughput, price)


def cheapest_at_slo(
    types: Sequence[TypeFrontier], prices: PriceTable | None
) -> tuple[TypeFrontier, float] | None:
    """The type whose best feasible point serves 1M inferences for the least, and that cost."""
    priced = [(kind, cost) for kind in types if (cost := _cost(kind, prices)) is not None]
    return min(priced, key=lambda pair: pair[1], default=None)


def _slo_text(settings: dict[str, Any]) -> str:
    budget = settings.get("latency_budget_ms")
    tail = f"p{float(settings.get('latency_percentile') or 99.0):g}"
    return f"{tail} <= {budget:g} ms" if budget is not None else f"{tail}: no budget"


def _describe(point: FrontierPoint | None) -> str:
    if point is None:
        return "none feasible"
    tail = f"p{point.percentile:g}"
    return f"{point.label}: {point.throughput:.4g}/s, {tail} {ms(point.tail_s)}"


def _table_rows(types: Sequence[TypeFrontier], prices: PriceTable | None) -> list[list[str]]:
    cheapest = cheapest_at_slo(types, prices)
    lines = []
    for kind in types:
        cost = _cost(kind, prices)
        price = f"{cost:.4g} {prices.currency}" if cost is not None and prices else "-"
        mark = "cheapest at the SLO" if cheapest and cheapest[0] is kind else ""
        lines.append(
            [
                kind.hardware_type,
                _describe(kind.best_latency),
                _describe(kind.best_feasible),
                price,
                mark,
            ]
        )
    return lines


def frontier_svg(
    types: Sequence[TypeFrontier], budget_ms: float | None, title: str, cheapest: str = ""
) -> str:
    """Per type its measured points (hollow: over a constraint), its frontier joined and its
    best feasible point starred, tail latency (x) against throughput (y), the SLO as a
    vertical dashed line."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global figure, no backend switched

    with matplotlib.rc_context(TEXT_AS_GIVEN):  # type: ignore[arg-type]  # keys typed as Literal
        figure = Figure(figsize=(6.4, 4.0), dpi=100)
        axes = figure.add_subplot()
        for index, kind in enumerate(types):
            color = PALETTE[index % len(PALETTE)]
            edge = kind.frontier
            axes.plot(
                [p.tail_s * 1e3 for p in edge],
                [p.throughput for p in edge],
                color=color,
                linewidth=2,
                marker="o",
                label=kind.hardware_type
                + (" (cheapest at the SLO)" if kind.hardware_type == cheapest else ""),
            )
            for point in kind.points:
                face = color if point.feasible else "none"
                axes.scatter(
                    point.tail_s * 1e3,
                    point.throughput,
                    s=18,
                    color=face,
                    zorder=3,
                    edgecolors=color,
                )
            best = kind.best_feasible
            if best is not None:  # the type's operating point: a star
                axes.scatter(
                    best.tail_s * 1e3,
                    best.throughput,
                    s=140,
                    marker="*",
                    color=color,
                    edgecolors="black",
                    zorder=4,
                )
        if budget_ms is not None:
            axes.axvline(budget_ms, color=SLO_COLOR, linestyle="--", label=f"SLO {budget_ms:g} ms")
        tail = f"p{types[0].points[0].percentile:g}" if types else "p99"
        axes.set_xlabel(f"per-request latency {tail} (ms)")
        axes.set_ylabel("throughput (inferences/s)")
        axes.set_title(title, fontsize=10)
        axes.legend(fontsize=7)
        axes.grid(alpha=0.3)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline: no XML prolog inside the page


def _chart(
    types: Sequence[TypeFrontier], budget: float | None, model: str, prices: PriceTable | None
) -> Markup | None:
    cheapest = cheapest_at_slo(types, prices)
    name = cheapest[0].hardware_type if cheapest else ""
    try:
        title = f"{model}: throughput against tail latency"
        return Markup(frontier_svg(types, budget, title, name))
    except ImportError:  # matplotlib is the `report` extra
        return None


def _verdict(types: Sequence[TypeFrontier], prices: PriceTable | None, slo: str) -> str:
    if prices is None:
        return ""
    cheapest = cheapest_at_slo(types, prices)
    if cheapest is None:
        return f"No priced hardware type has a point within the SLO ({slo})."
    kind, cost = cheapest
    best = kind.best_feasible
    assert best is not None  # priced only with a feasible point
    return (
        f"Cheapest hardware type at the SLO ({slo}): {kind.hardware_type}, "
        f"{cost:.4g} {prices.currency} per 1M inferences at {best.label} "
        f"({best.throughput:.4g}/s measured, one node at list price)"
    )


_HEADERS = ["hardware type", "best latency", "best feasible throughput", "cost per 1M", ""]


def frontier_section(rows: Sequence[Row], prices: PriceTable | None = None) -> Markup | None:
    """The section's HTML (``templates/frontiers.html.j2``), or None when the history has
    no load point (latency searches only: the report then has no such section)."""
    models = []
    for model, (settings, types) in sorted(model_frontiers(rows).items()):
        slo = _slo_text(settings)
        budget = settings.get("latency_budget_ms")
        models.append(
            {
                "name": model,
                "objective": settings.get("objective", "throughput"),
                "slo": slo,
                "rows": _table_rows(types, prices),
                "verdict": _verdict(types, prices, slo),
                "chart": _chart(types, budget, model, prices),
            }
        )
    if not models:
        return None
    return render("frontiers.html.j2", headers=_HEADERS, models=models)
