"""The report's first section: what runs where, a row per model x hardware type."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from html import escape

from speedster_dist.present import knob_text, ms
from speedster_dist.results._winners import Winner
from speedster_dist.results.report._html import Row, table, when
from speedster_dist.results.report._plots import threshold_of

__all__ = ["WinnerColumn", "winners_section"]

# An extra column of the winners table: its header, and its cell's text for a winner.
WinnerColumn = tuple[str, Callable[[Winner], str]]
_STATE_CLASS = {"confirmed": "good", "re-timed": "good", "regressed": "bad", "failed": "bad"}


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
        and r["role"] != "confirmed"  # a re-timing: not the same kind of measurement
        and r["run_id"] != base["run_id"]
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


def _p50_cell(w: Winner) -> str:
    row = w.row
    if not w.retimed or row.get("confirm_low_s") is None:
        return ms(row["latency_p50_s"])
    spread = f"{ms(row['confirm_low_s'])}-{ms(row['confirm_high_s'])}"
    return f"{ms(row['latency_p50_s'])} (rounds {spread})"


def _p90_cell(w: Winner, rows: Sequence[Row]) -> str:
    """A re-timed winner's p90 is its search trial's (the confirmation times medians only)."""
    if not w.retimed:
        return ms(w.row["latency_p90_s"])
    same = ("run_id", "hardware_type", "backend", "precision", "technique", "knobs")
    trial = next(
        (
            r
            for r in rows
            if r["role"] in ("candidate", "baseline")
            and r["status"] == "complete"
            and all(r[k] == w.row[k] for k in same)
        ),
        None,
    )
    return f"{ms(trial['latency_p90_s'])} (search)" if trial and trial["latency_p90_s"] else "n/a"


def _speedup_cell(w: Winner) -> str:
    speedup, spread = w.speedup, w.speedup_range
    if speedup is None:
        return "n/a"
    return f"{speedup:.2f}x" + (f" ({spread[0]:.2f}-{spread[1]:.2f}x)" if spread else "")


def _winner_cells(w: Winner, columns: Sequence[WinnerColumn], rows: Sequence[Row]) -> list[str]:
    row = w.row
    knobs = json.loads(row.get("knobs") or "{}")
    calibration = (json.loads(row.get("settings") or "{}").get("samples") or {}).get("calibration")
    shown_knobs = knob_text(knobs, calibration).strip() or "-"  # as they acted
    precision = row["precision"] + (f"/{row['technique']}" if row["technique"] else "")
    state = f'<span class="{_STATE_CLASS.get(w.state, "warn")}">{escape(w.detail)}</span>'
    return [
        _model_cell(w),
        escape(w.hardware_type),
        escape(row["backend"]),
        escape(precision),
        escape(shown_knobs),
        _p50_cell(w),
        _p90_cell(w, rows),
        _speedup_cell(w) + _baseline_moved(w, rows),
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
        "speed-up is against the baseline measured in the same run. When the search re-timed "
        "its best candidates side by side with the baseline, the confirmed fastest wins and "
        "its confirmed p50 and speed-up are shown (in brackets: the rounds' range). "
        "Confirmed: re-measured by enough nightly runs, and not regressed.</p>"
    )
    return table(headers, rows, "winners") + note
