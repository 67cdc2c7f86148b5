"""The report's first section: what runs where, a row per model x hardware type."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from html import escape

from speedster_dist.display import knob_text
from speedster_dist.results._html import Row, ms, table, when
from speedster_dist.results._plots import threshold_of
from speedster_dist.results._winners import Winner

__all__ = ["WinnerColumn", "winners_section"]

# An extra column of the winners table: its header, and its cell's text for a winner.
WinnerColumn = tuple[str, Callable[[Winner], str]]
_STATE_CLASS = {"confirmed": "good", "regressed": "bad", "failed": "bad"}


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
    return f"{when(w.row)} UTC<br>{source}{quick}"


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
        ms(row["latency_p50_s"]),
        ms(row["latency_p90_s"]),
        (f"{speedup:.2f}x" if speedup is not None else "n/a") + _baseline_moved(w, rows),
        escape(_drop_cell(w)),
        state,
        _measured_cell(w),
        *(escape(cell(w)) for _, cell in columns),
    ]


def winners_section(
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
    return table(headers, rows, "winners") + note
