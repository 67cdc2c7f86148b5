"""The report's plots, from history rows: latency over time, speed-ups, latency against drop.

Each plot is about one model on one hardware type; :mod:`._charts` draws it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from speedster_dist.results._regress import candidate_label
from speedster_dist.results._winners import Winner
from speedster_dist.results.report._charts import (
    PALETTE,
    Bar,
    Point,
    Series,
    bar_chart,
    drop_chart,
    line_chart,
)

__all__ = ["drop_charts", "latency_charts", "speedup_chart", "threshold_of"]

Row = Mapping[str, Any]


def _colors(names: Iterable[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


def _groups(rows: Sequence[Row]) -> dict[tuple[str, str], list[Row]]:
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        groups[(str(row["model_name"]), str(row["hardware_type"]))].append(row)
    return dict(sorted(groups.items()))


def threshold_of(rows: Sequence[Row]) -> float | None:
    """The accepted metric drop (``metric_drop_ths``) the latest of ``rows`` ran with."""
    for row in reversed(rows):
        value = json.loads(row.get("settings") or "{}").get("metric_drop_ths")
        if isinstance(value, int | float):
            return float(value)
    return None


def _series_label(row: Row, by_learner: bool = False) -> str:
    # The baseline is its own line even when a winner has the same configuration; learners
    # of one model (a sweep's settings) each have their own lines.
    learner = f"{row['learner']}: " if by_learner and row["learner"] else ""
    return learner + ("baseline: " if row["is_baseline"] else "") + candidate_label(row)


def latency_charts(rows: Sequence[Row], flagged: set[Any]) -> list[str]:
    """p50 over time per model x hardware type, a line per configuration; ``flagged``
    holds ``(run_id, learner, hardware_type, role)`` of regressed figures (ringed)."""
    charts = []
    for (model, hardware), members in _groups(rows).items():
        complete = [r for r in members if r["status"] == "complete" and r["latency_p50_s"]]
        if not complete:
            continue
        several = len({r["learner"] for r in complete}) > 1
        colors = _colors(_series_label(r, several) for r in complete)
        by_label: dict[str, list[Point]] = defaultdict(list)
        for r in complete:
            bad = (r["run_id"], r["learner"], r["hardware_type"], r["role"]) in flagged
            point = Point(r["time"], r["latency_p50_s"] * 1e3, bad, bool(r.get("quick_measure")))
            by_label[_series_label(r, several)].append(point)
        series = [Series(k, colors[k], tuple(v)) for k, v in sorted(by_label.items())]
        charts.append(line_chart(f"{model} on {hardware}", series, "p50 latency (ms)"))
    return charts


def speedup_chart(winners: Sequence[Winner]) -> str | None:
    """One bar per winner that has a baseline measured with it, coloured by hardware type."""
    colors = _colors(w.hardware_type for w in winners)
    bars = [
        Bar(
            f"{w.model} · {w.hardware_type}",
            speedup,
            colors[w.hardware_type],
            f"{speedup:.2f}x {candidate_label(w.row)}",
        )
        for w in winners
        if (speedup := w.speedup) is not None
    ]
    if not bars:
        return None
    return bar_chart("Speed-up of each winner over its baseline", bars, "speed-up (x)")


def drop_charts(rows: Sequence[Row]) -> list[str]:
    """Latency against metric drop per model x hardware type, every point on the axes: the
    accepted threshold dashed, rejected candidates (never timed) as crosses at the top."""
    charts = []
    for (model, hardware), members in _groups(rows).items():
        measured = [
            r
            for r in members
            if r["status"] == "complete" and r["metric_drop"] is not None and r["latency_p50_s"]
        ]
        rejected = [
            float(r["metric_drop"])
            for r in members
            if r["status"] == "rejected" and r["metric_drop"] is not None
        ]
        if not measured and not rejected:
            continue
        colors = _colors(r["backend"] for r in measured)
        by_backend: dict[str, list[Point]] = defaultdict(list)
        for r in measured:
            by_backend[r["backend"]].append(Point(r["metric_drop"], r["latency_p50_s"] * 1e3))
        series = [Series(k, colors[k], tuple(v)) for k, v in sorted(by_backend.items())]
        title = f"{model} on {hardware}"
        charts.append(
            drop_chart(title, series, rejected, threshold_of(members), "p50 latency (ms)")
        )
    return charts
