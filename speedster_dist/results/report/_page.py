"""The HTML report: one self-contained page (inline CSS and SVG, no script, nothing fetched).

Read top to bottom as a fleet owner does: what runs where (the winners table), whether it
still does (regressions, with how many figures could be judged), then the plots, then every
rejected and failed candidate with its reason. Charts are drawn by matplotlib (:mod:`._charts`).
Other sections (e.g. costs) plug in through ``render_report(..., sections=...)`` and the
winners table takes extra columns (``winner_columns``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from speedster_dist.cost import PriceTable
from speedster_dist.results._history import read_history
from speedster_dist.results._regress import RegressionSettings, candidate_label
from speedster_dist.results._winners import Winner, find_winners
from speedster_dist.results.report._costs import cost_column, cost_section
from speedster_dist.results.report._html import Row, table, when
from speedster_dist.results.report._nights import (
    flagged_keys,
    nightly_verdicts,
    regressions_section,
)
from speedster_dist.results.report._plots import drop_charts, latency_charts, speedup_chart
from speedster_dist.results.report._winner_table import WinnerColumn, winners_section

__all__ = ["WinnerColumn", "render_report", "write_report"]

_MAX_FAILURES = 200
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1600px}h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:16px 0 4px}.grid{display:flex;flex-wrap:wrap;gap:12px}
.grid figure{margin:0}svg.chart{max-width:100%;height:auto}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;
text-align:left;vertical-align:top;overflow-wrap:anywhere}th{background:#f4f4f4}
.bad{color:#b00;font-weight:bold}.warn{color:#8a5a00}.good{color:#080}.muted{color:#777}
"""


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _trials(rows: Sequence[Row]) -> list[Row]:
    """The trials and nightly re-measures: not the rows of a search's confirmation (re-timed
    trials, shown in the winners table only)."""
    return [r for r in rows if r["role"] != "confirmed"]


def _overview(rows: Sequence[Row]) -> str:
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
    libs = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
    return (
        f"<p>{escape(', '.join(counts))}, from {when(rows[0])} to {when(rows[-1])} (UTC).</p>"
        f'<p class="muted">Latest run used: {escape(libs)}.</p>'
    )


# -- plots and failures ----------------------------------------------------------------------


def _grid(charts: Sequence[str], empty: str = "No complete trial yet.") -> str:
    if not charts:
        return f"<p>{escape(empty)}</p>"
    return '<div class="grid">' + "".join(f"<figure>{c}</figure>" for c in charts) + "</div>"


def _plots(rows: Sequence[Row], winners: Sequence[Winner], flagged: set[Any]) -> str:
    speedups = speedup_chart(winners)
    return (
        "<h3>Speed-up per model and hardware type</h3>"
        + (speedups or "<p>No winner has a baseline measured with it yet.</p>")
        + "<h3>Latency over time (hollow: quick-measure; ringed: regression)</h3>"
        + _grid(latency_charts(rows, flagged))
        + "<h3>Latency against metric drop (dashed: the accepted drop)</h3>"
        + _grid(drop_charts(rows), "No metric drop measured yet.")
    )


def _failures(rows: Sequence[Row]) -> str:
    failed = [r for r in reversed(rows) if r["status"] != "complete"]
    if not failed:
        return "<p>No rejected or failed candidate.</p>"
    counts: dict[str, int] = defaultdict(int)
    for r in failed:
        counts[r["status"]] += 1
    shown = [
        [
            escape(when(r)),
            escape(r["model_name"]),
            escape(r["hardware_type"]),
            escape(candidate_label(r)),
            escape(r["status"]),
            "" if r["metric_drop"] is None else f"{r['metric_drop']:.3g}",
            escape(r["run_kind"]) + (" (quick)" if r.get("quick_measure") else ""),
            escape(r["reason"]),
        ]
        for r in failed[:_MAX_FAILURES]
    ]
    more = (
        f"<p class='muted'>Showing the newest {_MAX_FAILURES} of {len(failed)}.</p>"
        if len(failed) > _MAX_FAILURES
        else ""
    )
    what = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    headers = ["time (UTC)", "model", "hardware", "candidate", "status", "drop", "run", "reason"]
    return f"<p>{what}.</p>" + table(headers, shown, "failures") + more


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
    :class:`Winner`); ``sections``: extra ``(heading, HTML)`` sections, placed after the
    regressions and before the plots (the HTML is inserted as given: escape what you put in).
    ``prices``: the winners table gains a cost per 1M inferences column, and a cost section
    (per model: the fastest and the cheapest hardware type, the latency/cost frontier) comes
    after the regressions.
    """
    if not rows:
        raise ValueError("the history holds no trial: nothing to report")
    settings = settings or RegressionSettings()
    verdicts = nightly_verdicts(rows, settings)
    winners = find_winners(rows, verdicts, settings.min_history)
    if prices is not None:  # cost per 1M inferences, in the table and in its own section
        winner_columns = (*winner_columns, cost_column(prices))
        priced = cost_section(rows, prices) or "<p>No winner is priced.</p>"
        sections = (*sections, ("Cost per 1M inferences", priced))
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        (
            "What runs where: the winner per model and hardware type",
            winners_section(winners, winner_columns, rows),
        ),
        ("Regressions (nightly re-benchmarks)", regressions_section(verdicts, settings)),
        *((escape(name), html) for name, html in sections),
        ("Plots", _plots(_trials(rows), winners, flagged_keys(verdicts))),
        ("Rejected and failed candidates", _failures(_trials(rows))),
    ]
    body = "".join(f"<h2>{name}</h2>{html}" for name, html in parts)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="muted">Generated {generated}.</p>'
        f"{_overview(rows)}{body}</body></html>"
    )


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
