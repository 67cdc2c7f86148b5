"""The HTML report: one self-contained page (inline CSS and SVG, no script, nothing fetched),
rendered from the jinja2 templates of ``templates/`` (autoescaped; see :mod:`._templates`).

Read top to bottom as a fleet owner does: what runs where (the winners table), whether it
still does (regressions, with how many figures could be judged), then the plots, then every
rejected and failed candidate with its reason. Charts are drawn by matplotlib (:mod:`._charts`).
Other sections (e.g. costs) plug in through ``render_report(..., sections=...)`` and the
winners table takes extra columns (``winner_columns``).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from markupsafe import Markup

from speedster_dist.cost import PriceTable
from speedster_dist.results._history import read_history
from speedster_dist.results._regress import RegressionSettings, candidate_label
from speedster_dist.results._winners import Winner, find_winners
from speedster_dist.results.report._costs import cost_column, cost_section
from speedster_dist.results.report._frontiers import frontier_section
from speedster_dist.results.report._html import Row, when
from speedster_dist.results.report._nights import (
    flagged_keys,
    nightly_verdicts,
    regressions_section,
)
from speedster_dist.results.report._plots import drop_charts, latency_charts, speedup_chart
from speedster_dist.results.report._templates import (
    content_security_policy,
    render,
    style_elements,
    style_sheet,
    styles_to_classes,
    visible,
)
from speedster_dist.results.report._winner_table import WinnerColumn, winners_section

__all__ = ["WinnerColumn", "render_report", "write_report"]

logger = logging.getLogger(__name__)

_MAX_FAILURES = 200
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1600px}h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:16px 0 4px}.grid{display:flex;flex-wrap:wrap;gap:12px}
.grid figure{margin:0}svg.chart{max-width:100%;height:auto}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;
text-align:left;vertical-align:top;overflow-wrap:anywhere}th{background:#f4f4f4}
.bad{color:#b00;font-weight:bold}.warn{color:#8a5a00}.good{color:#080}.muted{color:#777}"""


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _trials(rows: Sequence[Row]) -> list[Row]:
    """The trials and nightly re-measures: not the rows of a search's confirmation (re-timed
    trials, shown in the winners table only)."""
    return [r for r in rows if r["role"] != "confirmed"]


def _overview(rows: Sequence[Row]) -> dict[str, str]:
    """What the history holds, counted, and the libraries of its latest run."""
    statuses: dict[str, int] = defaultdict(int)
    trials = _trials(rows)
    for row in trials:
        statuses[row["status"]] += 1
    retimed = len(rows) - len(trials)
    # A model is its fingerprint: two learners of one model are one model.
    models = {r["model_fingerprint"] or r["model_name"] for r in rows}
    counts = [
        _count(len({r["run_id"] for r in rows}), "run"),
        _count(len(models), "model"),
        _count(len({r["hardware_type"] for r in rows}), "hardware type"),
        _count(len(trials), "trial")
        + " ("
        + ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
        + ")",
        *([_count(retimed, "confirmation re-timing")] if retimed else []),
    ]
    versions = json.loads(rows[-1]["versions"] or "{}")
    return {
        "counts": ", ".join(counts),
        "first": when(rows[0]),
        "last": when(rows[-1]),
        "libraries": ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
    }


def _plots(rows: Sequence[Row], winners: Sequence[Winner], flagged: set[Any]) -> Markup:
    def charts(drawn: Sequence[str]) -> list[Markup]:
        return [Markup(svg) for svg in drawn]  # matplotlib's SVG: its text escaped by it

    speedups = speedup_chart(winners)
    return render(
        "plots.html.j2",
        speedups=Markup(speedups) if speedups else None,
        latency=charts(latency_charts(rows, flagged)),
        drops=charts(drop_charts(rows)),
    )


def _failures(rows: Sequence[Row]) -> Markup:
    failed = [r for r in reversed(rows) if r["status"] != "complete"]
    counts: dict[str, int] = defaultdict(int)
    for r in failed:
        counts[r["status"]] += 1
    shown = [
        [
            when(r),
            r["model_name"],
            r["hardware_type"],
            candidate_label(r),
            r["status"],
            "" if r["metric_drop"] is None else f"{r['metric_drop']:.3g}",
            r["run_kind"] + (" (quick)" if r.get("quick_measure") else ""),
            r["reason"],
        ]
        for r in failed[:_MAX_FAILURES]
    ]
    return render(
        "failures.html.j2",
        counts=", ".join(f"{n} {status}" for status, n in sorted(counts.items())),
        headers=["time (UTC)", "model", "hardware", "candidate", "status", "drop", "run", "reason"],
        rows=shown,
        shown=_MAX_FAILURES,
        more=len(failed) if len(failed) > _MAX_FAILURES else 0,
    )


_JSON_COLUMNS = ("knobs", "settings", "versions")  # text whose strings are shown too


def _visible_value(value: Any) -> Any:
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {visible(str(k)): _visible_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_visible_value(v) for v in value]
    return value


def _visible_rows(rows: Sequence[Row]) -> list[Row]:
    """Every text of ``rows`` (the JSON columns' strings included) with its bidi and control
    characters made visible (:func:`._templates.visible`): tables and charts show them so."""
    shown: list[Row] = []
    for row in rows:
        text = {k: visible(v) if isinstance(v, str) else v for k, v in row.items()}
        for name in _JSON_COLUMNS:
            if text.get(name):
                text[name] = json.dumps(_visible_value(json.loads(text[name])))
        shown.append(text)
    return shown


def _page(title: str, overview: dict[str, str], parts: Sequence[tuple[str, Markup]]) -> str:
    """The page around its sections: the charts' styles moved into the one style sheet, and
    the Content-Security-Policy that allows that sheet only."""
    rules: dict[str, str] = {}
    moved = []
    sheets = [_CSS]
    for heading, body in parts:
        body_text, found = style_elements(styles_to_classes(body, rules))
        sheets += [css for css in found if css not in sheets]
        moved.append((heading, Markup(body_text)))
    sheet = style_sheet(sheets, rules)
    logger.debug("report page: %d sections, %d chart styles", len(parts), len(rules))
    return render(
        "page.html.j2",
        policy=content_security_policy(sheet),
        sheet=Markup(sheet),  # our CSS and matplotlib's declarations: no data
        title=title,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        sections=moved,
        **overview,
    )


def render_report(
    rows: Sequence[Row],
    title: str = "speedster-dist report",
    settings: RegressionSettings | None = None,
    winner_columns: Sequence[WinnerColumn] = (),
    sections: Sequence[tuple[str, str]] = (),
    prices: PriceTable | None = None,
) -> str:
    """The whole page for history ``rows`` (oldest first). Raises ValueError when empty.

    ``winner_columns``: extra columns of the winners table (header, cell text of a
    :class:`Winner`: escaped); ``sections``: extra ``(heading, HTML)`` sections, placed after
    the regressions and before the plots (the heading is text; the HTML is inserted as
    given: escape what you put in, e.g. with ``markupsafe.escape``). ``prices``: the winners
    table gains a cost per 1M inferences column, and a cost section (per model: the fastest
    and the cheapest hardware type, the latency/cost frontier) comes after the regressions.
    When the history holds load points (throughput or cost searches), a serving section
    draws each hardware type's frontier (throughput against p99) with the SLO line and,
    with ``prices``, names the cheapest hardware type at the SLO.
    The page runs no script and fetches nothing: its Content-Security-Policy says so.
    """
    if not rows:
        raise ValueError("the history holds no trial: nothing to report")
    rows = _visible_rows(rows)
    if prices is not None:  # looked up by the rows' (now visible) hardware types
        per_hour = {visible(key): price for key, price in prices.per_hour.items()}
        prices = replace(prices, per_hour=per_hour)
    settings = settings or RegressionSettings()
    verdicts = nightly_verdicts(rows, settings)
    winners = find_winners(rows, verdicts, settings.min_history)
    extra = [(heading, Markup(html)) for heading, html in sections]  # the caller's HTML
    serving = frontier_section(rows, prices)  # None without load points
    if serving is not None:
        extra.insert(0, ("Serving at the SLO: frontiers per hardware type", serving))
    if prices is not None:  # cost per 1M inferences, in the table and in its own section
        winner_columns = (*winner_columns, cost_column(prices))
        extra.append(("Cost per 1M inferences", cost_section(rows, prices) or Markup()))
    parts = [
        (
            "What runs where: the winner per model and hardware type",
            winners_section(winners, winner_columns, rows),
        ),
        ("Regressions (nightly re-benchmarks)", regressions_section(verdicts, settings)),
        *extra,
        ("Plots", _plots(_trials(rows), winners, flagged_keys(verdicts))),
        ("Rejected and failed candidates", _failures(_trials(rows))),
    ]
    return str(_page(title, _overview(rows), parts))


def write_report(
    history: str | Path,
    out: str | Path,
    title: str = "speedster-dist report",
    settings: RegressionSettings | None = None,
    prices: PriceTable | None = None,
) -> Path:
    """Read the history under ``history`` and write the page to ``out`` (with costs when
    ``prices`` are given)."""
    rows = read_history(history).to_pylist()
    page = render_report(rows, title, settings, prices=prices)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target
