"""The HTML report: one self-contained page (inline CSS and SVG, no script, nothing fetched).

Sections: overview, regressions found by the nightly runs, latency over time per
(model, hardware type, backend), speed-up per hardware type, latency against metric drop, failures.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from speedster_dist.cost import PriceTable
from speedster_dist.results._cost_report import cost_section
from speedster_dist.results._history import read_history
from speedster_dist.results._regress import (
    Comparison,
    RegressionSettings,
    candidate_label,
    compare_run,
)
from speedster_dist.results._svg import (
    PALETTE,
    Bar,
    Point,
    Series,
    hbar_chart,
    line_chart,
    scatter_chart,
)

__all__ = ["render_report", "write_report"]

Row = Mapping[str, Any]
_MAX_FAILURES = 200
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:16px 0 4px}
.grid{display:flex;flex-wrap:wrap;gap:12px}.grid figure{margin:0}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f4f4f4}.bad{color:#b00;font-weight:bold}
.muted{color:#777}.kpi{display:inline-block;margin-right:28px}.kpi b{font-size:20px;display:block}
"""


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.3g} ms"


def _p50(row: Row) -> str:
    return f"p50 {_ms(row['latency_p50_s'])}"


def _when(row: Row) -> str:
    moment: datetime = row["time"]
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _colors(names: Iterable[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


def _subject(row: Row) -> str:
    """What a plot is about: the saved learner (a model with its settings), else the model."""
    learner, model = row["learner"], row["model_name"]
    if not learner or learner == model:
        return str(model)
    return f"{learner} ({model})"


def _groups(rows: Sequence[Row]) -> dict[tuple[str, str], list[Row]]:
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        groups[(_subject(row), row["hardware_type"])].append(row)
    return dict(sorted(groups.items()))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], raw: bool = False) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if raw else escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _overview(rows: Sequence[Row]) -> str:
    statuses: dict[str, int] = defaultdict(int)
    for row in rows:
        statuses[row["status"]] += 1
    kpis = [
        ("runs", len({r["run_id"] for r in rows})),
        ("models", len({r["model_name"] for r in rows})),
        ("hardware types", len({r["hardware_type"] for r in rows})),
        ("trials", len(rows)),
        *sorted(statuses.items()),
    ]
    first, last = _when(rows[0]), _when(rows[-1])
    versions = json.loads(rows[-1]["versions"] or "{}")
    libs = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
    return (
        "".join(f'<span class="kpi"><b>{v}</b>{escape(k)}</span>' for k, v in kpis)
        + f'<p class="muted">From {first} to {last} (UTC). Latest run used: {escape(libs)}.</p>'
    )


def _regressions(rows: Sequence[Row], settings: RegressionSettings) -> tuple[str, set[Any]]:
    runs = sorted({(r["time"], r["run_id"]) for r in rows if r["run_kind"] == "rebench"})
    run_ids = list(dict.fromkeys(run_id for _, run_id in runs))
    flagged: list[tuple[str, Comparison]] = []
    for run_id in run_ids:
        flagged.extend((run_id, c) for c in compare_run(rows, run_id, settings) if c.regressed)
    keys = {(run, c.learner, c.hardware_type, c.role) for run, c in flagged}
    if not run_ids:
        return "<p>No nightly re-benchmark (<code>rebench</code>) recorded yet.</p>", keys
    if not flagged:
        return f"<p>No regression in {len(run_ids)} nightly runs.</p>", keys
    table = [
        [
            run,
            c.learner,
            c.hardware_type,
            c.role,
            c.candidate,
            c.figure,
            _figure(c.figure, c.value),
            _figure(c.figure, c.median),
            "" if c.change is None else f"{c.change:+.0%}",
            c.note,
        ]
        for run, c in reversed(flagged)
    ]
    headers = ["run", "learner", "hardware", "role", "candidate", "figure", "now", "median"]
    summary = f'<p class="bad">{len(flagged)} regressed figures.</p>'
    return summary + _table([*headers, "change", "note"], table), keys


def _figure(figure: str, value: float | None) -> str:
    if value is None:
        return ""
    return _ms(value) if figure.startswith("latency") else f"{value:.4g}"


def _series_label(row: Row) -> str:
    # The baseline is its own line even when a winner has the same configuration.
    return ("baseline: " if row["is_baseline"] else "") + candidate_label(row)


def _latency_charts(rows: Sequence[Row], flagged: set[Any]) -> str:
    charts = []
    for (model, hardware), members in _groups(rows).items():
        complete = [r for r in members if r["status"] == "complete"]
        if not complete:
            continue
        colors = _colors(_series_label(r) for r in complete)
        by_label: dict[str, list[Point]] = defaultdict(list)
        for r in complete:
            bad = (r["run_id"], r["learner"], r["hardware_type"], r["role"]) in flagged
            tip = f"{candidate_label(r)} ({r['role']}, {r['run_kind']}) {_when(r)}: {_p50(r)}"
            by_label[_series_label(r)].append(
                Point(r["time"].timestamp(), r["latency_p50_s"] * 1e3, tip, bad)
            )
        series = [Series(k, colors[k], tuple(v)) for k, v in sorted(by_label.items())]
        charts.append(line_chart(f"{model} on {hardware}", series, "p50 latency (ms)"))
    return _grid(charts)


def _speedups(rows: Sequence[Row]) -> str:
    bars = []
    colors = _colors(r["hardware_type"] for r in rows)
    for (model, hardware), members in _groups(rows).items():
        best = _latest_speedup(members)
        if best is None:
            continue
        speedup, winner, base = best
        tip = f"{candidate_label(winner)} {_p50(winner)} against the baseline's {_p50(base)}"
        bars.append(Bar(f"{model} · {hardware}", speedup, colors[hardware], tip))
    if not bars:
        return "<p>No run has both a complete baseline and a complete candidate yet.</p>"
    return hbar_chart("Speed-up over the baseline, latest run", bars, "speed-up (x)")


def _latest_speedup(members: Sequence[Row]) -> tuple[float, Row, Row] | None:
    runs: dict[str, list[Row]] = defaultdict(list)
    for r in members:
        if r["status"] == "complete":
            runs[r["run_id"]].append(r)
    for run in sorted(runs.values(), key=lambda rs: max(r["time"] for r in rs), reverse=True):
        base = next((r for r in run if r["is_baseline"]), None)
        if base is None:
            continue
        winner = min(run, key=lambda r: r["latency_p50_s"])
        if winner["latency_p50_s"] <= 0:
            continue
        return base["latency_p50_s"] / winner["latency_p50_s"], winner, base
    return None


def _drop_charts(rows: Sequence[Row]) -> str:
    charts = []
    for (model, hardware), members in _groups(rows).items():
        measured = [
            r for r in members if r["status"] == "complete" and r["metric_drop"] is not None
        ]
        if not measured:
            continue
        colors = _colors(r["backend"] for r in measured)
        by_backend: dict[str, list[Point]] = defaultdict(list)
        for r in measured:
            tip = f"{candidate_label(r)} {_when(r)}: drop {r['metric_drop']:.3g}, {_p50(r)}"
            by_backend[r["backend"]].append(Point(r["metric_drop"], r["latency_p50_s"] * 1e3, tip))
        series = [Series(k, colors[k], tuple(v)) for k, v in sorted(by_backend.items())]
        title = f"{model} on {hardware}"
        charts.append(scatter_chart(title, series, "metric drop (log)", "p50 latency (ms)"))
    return _grid(charts)


def _failures(rows: Sequence[Row]) -> str:
    failed = [r for r in reversed(rows) if r["status"] == "failed"]
    if not failed:
        return "<p>No failed trial.</p>"
    shown = [
        [
            escape(_when(r)),
            escape(_subject(r)),
            escape(r["hardware_type"]),
            escape(r["node_id"][:12]),
            escape(candidate_label(r)),
            escape(r["run_kind"]),
            f'<span title="{escape(r["reason"])}">{escape(r["reason"][:300])}</span>',
        ]
        for r in failed[:_MAX_FAILURES]
    ]
    more = (
        f"<p class='muted'>Showing {_MAX_FAILURES} of {len(failed)}.</p>"
        if len(failed) > _MAX_FAILURES
        else ""
    )
    headers = ["time (UTC)", "model", "hardware", "node", "candidate", "run", "reason"]
    return f"<p>{len(failed)} failed trials.</p>" + _table(headers, shown, raw=True) + more


def _grid(charts: Sequence[str]) -> str:
    if not charts:
        return "<p>No complete trial yet.</p>"
    return '<div class="grid">' + "".join(f"<figure>{c}</figure>" for c in charts) + "</div>"


def render_report(
    rows: Sequence[Row],
    title: str = "speedster-dist report",
    settings: RegressionSettings | None = None,
    prices: PriceTable | None = None,
) -> str:
    """The whole page for history ``rows`` (oldest first), with a cost section when
    ``prices`` are given. Raises ValueError when empty."""
    if not rows:
        raise ValueError("the history holds no trial: nothing to report")
    regressions, flagged = _regressions(rows, settings or RegressionSettings())
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        ("Overview", _overview(rows)),
        ("Regressions (nightly re-benchmarks)", regressions),
        (
            "Latency over time, per model &times; hardware type &times; backend",
            _latency_charts(rows, flagged),
        ),
        ("Speed-up per hardware type", _speedups(rows)),
        ("Latency against metric drop", _drop_charts(rows)),
        ("Failures", _failures(rows)),
    ]
    if prices is not None:  # per model: cost per 1M inferences and the latency/cost frontier
        sections.insert(4, ("Cost per 1M inferences", cost_section(rows, prices) or ""))
    body = "".join(f"<h2>{name}</h2>{html}" for name, html in sections)  # names are ours
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="muted">Generated {generated}.</p>{body}</body></html>'
    )


def write_report(
    history: str | Path,
    out: str | Path,
    title: str = "speedster-dist report",
    settings: RegressionSettings | None = None,
) -> Path:
    """Read the history under ``history`` and write the page to ``out``."""
    rows = read_history(history).to_pylist()
    page = render_report(rows, title, settings)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target
