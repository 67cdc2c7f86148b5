"""The report's first section: what runs where, a row per model x hardware type."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from markupsafe import Markup

from speedster_dist.present import knob_text, ms
from speedster_dist.results._winners import Winner
from speedster_dist.results.report._html import Row, when
from speedster_dist.results.report._plots import threshold_of
from speedster_dist.results.report._templates import render

__all__ = ["WinnerColumn", "winners_section"]

# An extra column of the winners table: its header, and its cell's text for a winner.
WinnerColumn = tuple[str, Callable[[Winner], str]]
_STATE_CLASS = {"confirmed": "good", "re-timed": "good", "regressed": "bad", "failed": "bad"}


def _drop_cell(w: Winner) -> str:
    drop = w.row["metric_drop"]
    if drop is None:
        return "n/a"
    limit = threshold_of([w.row])
    return f"{drop:.3g}" + (f" (limit {limit:g})" if limit is not None else "")


# A baseline this much faster or slower than the previous one makes a speed-up suspect.
_BASELINE_MOVE = 0.4


def _baseline_moved(w: Winner, rows: Sequence[Row]) -> str:
    """How much the baseline of the winner's run moved since the previous measurement of
    the same baseline, when it moved a lot (a halved baseline: a different machine?)."""
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
    return "" if abs(change) < _BASELINE_MOVE else f"{change:+.0%}"


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


def _load_text(row: Any) -> str:
    """`` @ 8x2`` for a load point's row (a throughput or cost search), else ""."""
    batch = row.get("load_batch_size")
    return f" @ {batch}x{row.get('concurrency')}" if batch is not None else ""


def _winner_view(w: Winner, columns: Sequence[WinnerColumn], rows: Sequence[Row]) -> dict[str, Any]:
    """A row of the table as text, for ``winners.html.j2`` (which escapes every value)."""
    row = w.row
    knobs = json.loads(row.get("knobs") or "{}")
    calibration = (json.loads(row.get("settings") or "{}").get("samples") or {}).get("calibration")
    return {
        "model": w.model,
        "learner": w.learner if w.learner and w.learner != w.model else "",
        "hardware_type": w.hardware_type,
        "backend": row["backend"],
        "precision": row["precision"] + (f"/{row['technique']}" if row["technique"] else ""),
        "knobs": (knob_text(knobs, calibration).strip() or "-") + _load_text(row),
        "p50": _p50_cell(w),
        "p90": _p90_cell(w, rows),
        "speedup": _speedup_cell(w),
        "baseline_moved": _baseline_moved(w, rows),
        "drop": _drop_cell(w),
        "state": w.detail,
        "state_class": _STATE_CLASS.get(w.state, "warn"),
        "when": when(row),
        # A history's field like any other: text, escaped by the template.
        "source": "nightly re-measure" if w.nightly else f"{row['run_kind']} search",
        "quick": bool(row.get("quick_measure")),
        "extra": [cell(w) for _, cell in columns],
    }


_HEADERS = [
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
]


def _tokens_cell(w: Winner) -> str:
    """A generation winner's tokens a second, time to first token and per output token."""
    rate = w.row.get("tokens_per_s")
    if not rate:
        return "-"
    ttft, tpot = ms(w.row.get("ttft_p50_s")), ms(w.row.get("tpot_p50_s"))
    return f"{rate:.1f} (TTFT {ttft}, TPOT {tpot})"


def winners_section(
    winners: Sequence[Winner], columns: Sequence[WinnerColumn], history: Sequence[Row]
) -> Markup:
    """The section's HTML (``templates/winners.html.j2``); a history of generation searches
    adds their tokens/s (docs/generation.md)."""
    if any(w.row.get("tokens_per_s") for w in winners):
        columns = [*columns, ("tokens/s", _tokens_cell)]
    return render(
        "winners.html.j2",
        headers=[*_HEADERS, *(header for header, _ in columns)],
        winners=[_winner_view(w, columns, history) for w in winners],
    )
