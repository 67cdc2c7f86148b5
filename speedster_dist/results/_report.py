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
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from speedster_dist.display import knob_text
from speedster_dist.results._history import read_history
from speedster_dist.results._plots import drop_charts, latency_charts, speedup_chart, threshold_of
from speedster_dist.results._regress import (
    Comparison,
    RegressionSettings,
    candidate_label,
    compare_run,
)
from speedster_dist.results._winners import Winner, find_winners

__all__ = ["WinnerColumn", "render_report", "write_report"]

Row = Mapping[str, Any]
# An extra column of the winners table: its header, and its cell's text for a winner.
WinnerColumn = tuple[str, Callable[[Winner], str]]
_MAX_FAILURES = 200
_MAX_LATEST = 60  # figures of the latest night listed in full; above, the ok ones are counted
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1600px}h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:16px 0 4px}.grid{display:flex;flex-wrap:wrap;gap:12px}
.grid figure{margin:0}svg.chart{max-width:100%;height:auto}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;
text-align:left;vertical-align:top;overflow-wrap:anywhere}th{background:#f4f4f4}
.bad{color:#b00;font-weight:bold}.warn{color:#8a5a00}.good{color:#080}.muted{color:#777}
"""
_STATE_CLASS = {"confirmed": "good", "regressed": "bad", "failed": "bad"}


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.3g} ms"


def _when(row: Row) -> str:
    moment: datetime = row["time"]
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], css_id: str = "") -> str:
    """Cells are HTML (escape them first); headers are text."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    ident = f' id="{css_id}"' if css_id else ""
    return f"<table{ident}><tr>{head}</tr>{body}</table>"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _overview(rows: Sequence[Row]) -> str:
    statuses: dict[str, int] = defaultdict(int)
    for row in rows:
        statuses[row["status"]] += 1
    # A model is its fingerprint: two learners of one model are one model.
    models = {r["model_fingerprint"] or r["model_name"] for r in rows}
    counts = [
        _count(len({r["run_id"] for r in rows}), "run"),
        _count(len(models), "model"),
        _count(len({r["hardware_type"] for r in rows}), "hardware type"),
        _count(len(rows), "trial")
        + " ("
        + ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
        + ")",
    ]
    versions = json.loads(rows[-1]["versions"] or "{}")
    libs = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
    return (
        f"<p>{escape(', '.join(counts))}, from {_when(rows[0])} to {_when(rows[-1])} (UTC).</p>"
        f'<p class="muted">Latest run used: {escape(libs)}.</p>'
    )


# -- what runs where ------------------------------------------------------------------------


def _model_cell(w: Winner) -> str:
    if w.learner and w.learner != w.model:
        return f'{escape(w.model)}<br><span class="muted">learner {escape(w.learner)}</span>'
    return escape(w.model)


def _drop_cell(w: Winner) -> str:
    drop = w.row["metric_drop"]
    if drop is None:
        return "n/a"
    limit = threshold_of([w.row])
    return f"{drop:.3g}" + (f" (limit {limit:g})" if limit is not None else "")


def _measured_cell(w: Winner) -> str:
    source = "nightly re-measure" if w.nightly else f"{w.row['run_kind']} search"
    quick = ' <span class="warn">quick-measure: noisy</span>' if w.row.get("quick_measure") else ""
    return f"{_when(w.row)} UTC<br>{source}{quick}"


# A baseline this much faster or slower than the previous one makes a speed-up suspect.
_BASELINE_MOVE = 0.4


def _baseline_moved(w: Winner, rows: Sequence[Row]) -> str:
    """A warning when the baseline of the winner's run moved a lot since the previous
    measurement of the same baseline (a halved baseline: a different machine?)."""
    base = w.baseline
    if base is None or not base["latency_p50_s"]:
        return ""
    earlier = [
        r
        for r in rows
        if r["is_baseline"]
        and r["status"] == "complete"
        and r["latency_p50_s"]
        and r["time"] < base["time"]
        and (r["model_name"], r["learner"] or "", r["hardware_type"])
        == (w.model, w.learner, w.hardware_type)
    ]
    if not earlier:
        return ""
    change = base["latency_p50_s"] / earlier[-1]["latency_p50_s"] - 1.0
    if abs(change) < _BASELINE_MOVE:
        return ""
    return f'<br><span class="warn">baseline {change:+.0%} since the run before</span>'


def _winner_cells(w: Winner, columns: Sequence[WinnerColumn], rows: Sequence[Row]) -> list[str]:
    row = w.row
    knobs = json.loads(row.get("knobs") or "{}")
    calibration = (json.loads(row.get("settings") or "{}").get("samples") or {}).get("calibration")
    shown_knobs = knob_text(knobs, calibration).strip() or "-"  # as they acted
    precision = row["precision"] + (f"/{row['technique']}" if row["technique"] else "")
    speedup = w.speedup
    state = f'<span class="{_STATE_CLASS.get(w.state, "warn")}">{escape(w.detail)}</span>'
    return [
        _model_cell(w),
        escape(w.hardware_type),
        escape(row["backend"]),
        escape(precision),
        escape(shown_knobs),
        _ms(row["latency_p50_s"]),
        _ms(row["latency_p90_s"]),
        (f"{speedup:.2f}x" if speedup is not None else "n/a") + _baseline_moved(w, rows),
        escape(_drop_cell(w)),
        state,
        _measured_cell(w),
        *(escape(cell(w)) for _, cell in columns),
    ]


def _winners(
    winners: Sequence[Winner], columns: Sequence[WinnerColumn], history: Sequence[Row]
) -> str:
    if not winners:
        return "<p>No model has a winner yet: no search completed a candidate.</p>"
    headers = [
        "model",
        "hardware type",
        "backend",
        "precision",
        "knobs",
        "p50",
        "p90",
        "speed-up",
        "metric drop",
        "confirmed",
        "measured",
        *(header for header, _ in columns),
    ]
    rows = [_winner_cells(w, columns, history) for w in winners]
    note = (
        '<p class="muted">The winner is the fastest complete candidate of the latest search; '
        "speed-up is against the baseline measured in the same run. Confirmed: re-measured "
        "by enough nightly runs, and not regressed.</p>"
    )
    return _table(headers, rows, "winners") + note


# -- regressions -----------------------------------------------------------------------------


def _figure(figure: str, value: float | None) -> str:
    if value is None:
        return ""
    return _ms(value) if figure.startswith("latency") else f"{value:.3g}"


def _comparison_cells(c: Comparison, run: str = "") -> list[str]:
    css = "bad" if c.regressed else ("good" if c.judged else "warn")
    cells = [] if not run else [escape(run)]
    return [
        *cells,
        escape(c.model_name) + (f" ({escape(c.learner)})" if c.learner else ""),
        escape(c.hardware_type),
        escape(c.role),
        escape(c.candidate),
        escape(c.figure),
        escape(_figure(c.figure, c.value)),
        escape(_figure(c.figure, c.median)) + f" (n={c.history})",
        "" if c.change is None else f"{c.change:+.0%}",
        f'<span class="{css}">{escape(c.verdict)}</span>',
        escape(c.note),
    ]


_VERDICT_HEADERS = ["model", "hardware", "role", "candidate", "figure", "now", "median"]


def judged_text(comparisons: Sequence[Comparison], min_history: int) -> str:
    """``N of M figures judged (needs 3 nights)``."""
    judged = sum(1 for c in comparisons if c.judged)
    return f"{judged} of {len(comparisons)} figures judged (needs {min_history} nights)"


def _regressions(
    rows: Sequence[Row], verdicts: Mapping[str, list[Comparison]], settings: RegressionSettings
) -> str:
    if not verdicts:
        return (
            "<p>No nightly re-benchmark (<code>rebench</code>) recorded yet: "
            f"0 figures judged (needs {settings.min_history} nights).</p>"
        )
    latest = list(verdicts)[-1]
    everything = [c for found in verdicts.values() for c in found]
    flagged = [(run, c) for run, found in verdicts.items() for c in found if c.regressed]
    judged = sum(1 for c in everything if c.judged)
    summary = (
        f'<p id="judged">Latest night ({escape(latest)}): '
        f"{judged_text(verdicts[latest], settings.min_history)}.</p>"
    )
    if flagged:
        summary += (
            f'<p class="bad">{len(flagged)} regressed figures in {len(verdicts)} nightly runs.</p>'
        )
        table = [_comparison_cells(c, run) for run, c in reversed(flagged)]
        headers = ["run", *_VERDICT_HEADERS, "change", "verdict", "note"]
        summary += _table(headers, table, "regressions")
    elif judged:
        summary += (
            f"<p>No regression among the {judged} judged figures of {len(verdicts)} runs.</p>"
        )
    else:
        summary += (
            '<p class="warn">Nothing judged yet: every figure needs '
            f"{settings.min_history} earlier nights; no verdict either way.</p>"
        )
    shown = verdicts[latest]
    hidden = ""
    if len(shown) > _MAX_LATEST:  # a big fleet: what needs reading only
        worth = [c for c in shown if c.verdict != "ok" or c.note]
        hidden = (
            f'<p class="muted">{len(shown) - len(worth)} figures ok, without notes: not shown.</p>'
        )
        shown = worth
    headers = [*_VERDICT_HEADERS, "change", "verdict", "note"]
    every = _table(headers, [_comparison_cells(c) for c in shown], "latest-night")
    return summary + "<h3>Every figure of the latest night</h3>" + every + hidden


def _verdicts(rows: Sequence[Row], settings: RegressionSettings) -> dict[str, list[Comparison]]:
    """The verdicts of each nightly run id, oldest run first."""
    runs = sorted({(r["time"], r["run_id"]) for r in rows if r["run_kind"] == "rebench"})
    run_ids = list(dict.fromkeys(run_id for _, run_id in runs))
    return {run_id: compare_run(rows, run_id, settings) for run_id in run_ids}


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
            escape(_when(r)),
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
    return f"<p>{what}.</p>" + _table(headers, shown, "failures") + more


def _flagged(verdicts: Mapping[str, list[Comparison]]) -> set[Any]:
    """``(run_id, learner, hardware_type, role)`` of every regressed figure (ringed)."""
    return {
        (run, c.learner, c.hardware_type, c.role)
        for run, found in verdicts.items()
        for c in found
        if c.regressed
    }


def render_report(
    rows: Sequence[Row],
    title: str = "speedster-dist report",
    settings: RegressionSettings | None = None,
    winner_columns: Sequence[WinnerColumn] = (),
    sections: Sequence[tuple[str, str]] = (),
) -> str:
    """The whole page for history ``rows`` (oldest first). Raises ValueError when empty.

    ``winner_columns``: extra columns of the winners table (header, cell text of a
    :class:`Winner`); ``sections``: extra ``(heading, HTML)`` sections, placed after the
    regressions and before the plots (the HTML is inserted as given: escape what you put in).
    """
    if not rows:
        raise ValueError("the history holds no trial: nothing to report")
    settings = settings or RegressionSettings()
    verdicts = _verdicts(rows, settings)
    winners = find_winners(rows, verdicts, settings.min_history)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        (
            "What runs where: the winner per model and hardware type",
            _winners(winners, winner_columns, rows),
        ),
        ("Regressions (nightly re-benchmarks)", _regressions(rows, verdicts, settings)),
        *((escape(name), html) for name, html in sections),
        ("Plots", _plots(rows, winners, _flagged(verdicts))),
        ("Rejected and failed candidates", _failures(rows)),
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
) -> Path:
    """Read the history under ``history`` and write the page to ``out``."""
    rows = read_history(history).to_pylist()
    page = render_report(rows, title, settings)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target
