"""Regression detection: each re-measured figure against its own trailing median.

A *series* is one figure of one learner on one hardware type: the deployed winner or the
baseline, as re-measured by the nightly ``rebench`` (rows with ``run_kind == "rebench"`` and
role ``winner`` or ``baseline``). The winner's configuration is not part of the key on
purpose: what is watched is "what this learner runs on this hardware", whatever it is.
A winner chosen for an operating point (a throughput or cost search) is re-measured there,
and its throughput and per-request p99 are judged against earlier measurements at the same
point (a p99 over the run's latency budget is a regression whatever the history).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from speedster_dist.present import knob_text

__all__ = ["Comparison", "RegressionSettings", "candidate_label", "compare_run"]

_LATENCIES = ("latency_p50_s", "latency_p90_s")
_SERIES_ROLES = ("winner", "baseline")


@dataclass(frozen=True)
class RegressionSettings:
    """When a figure counts as a regression.

    ``threshold``: relative increase of the median latency (p50) over its trailing median
    that is a regression (0.2 = 20% slower). ``tail_threshold``: the same for the p90, whose
    estimate from a few dozen calls is noisier, hence the larger default.
    ``window``: how many earlier complete measurements form the trailing median.
    ``min_history``: fewer earlier measurements than this and latency is not judged yet.
    ``drop_tolerance``: absolute increase of the metric drop that counts as a regression.
    """

    threshold: float = 0.2
    window: int = 7
    min_history: int = 3
    drop_tolerance: float = 0.01
    tail_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.threshold <= 0 or self.tail_threshold <= 0 or self.drop_tolerance < 0:
            raise ValueError("thresholds must be > 0 and drop_tolerance >= 0")
        if self.window < 1 or self.min_history < 1 or self.min_history > self.window:
            raise ValueError("need 1 <= min_history <= window")


@dataclass(frozen=True)
class Comparison:
    """One figure of one series in one run, next to its trailing median."""

    learner: str
    model_name: str
    hardware_type: str
    role: str
    candidate: str
    # "latency_p50_s", "latency_p90_s", "metric_drop" or "status"; at an operating point
    # also "throughput" (inferences a second) and "latency_p99_s" (per request)
    figure: str
    value: float | None
    median: float | None
    history: int  # earlier complete measurements the median was taken over
    regressed: bool
    note: str = ""
    judged: bool = True  # False: too little history to say anything (never "ok")

    @property
    def verdict(self) -> str:
        """``REGRESSION``, ``ok`` or ``not judged``: a figure nobody judged is never ``ok``."""
        if self.regressed:
            return "REGRESSION"
        return "ok" if self.judged else "not judged"

    @property
    def change(self) -> float | None:
        """Relative change against the median (0.25 = 25% higher), when both are numbers."""
        if self.value is None or not self.median:
            return None
        return self.value / self.median - 1.0


def _key(row: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (row["learner"], row["model_fingerprint"], row["hardware_type"], row["role"])


def candidate_label(row: Mapping[str, Any]) -> str:
    """``backend precision/technique knob=value...``, as the CLI prints candidates.

    Knobs that count samples show what the run had (``calibration_samples=32`` with 6
    held-in samples is ``calibration_samples=6``), when the row's settings record it.
    """
    tech = f"/{row['technique']}" if row.get("technique") else ""
    knobs = json.loads(row.get("knobs") or "{}")
    settings = json.loads(row.get("settings") or "{}")
    calibration = (settings.get("samples") or {}).get("calibration")
    return f"{row['backend']} {row['precision']}{tech}{knob_text(knobs, calibration)}"


def _quick(row: Mapping[str, Any]) -> bool:
    return bool(row.get("quick_measure"))


def _comments(
    row: Mapping[str, Any],
    earlier: Sequence[Mapping[str, Any]],
    value: float,
    values: Sequence[float],
    threshold: float,
    enough: bool,
) -> list[str]:
    """What a reader should know besides the verdict: a large move that is not judged (too
    little history) or not a regression (faster), and quick measurements in the mix."""
    notes = []
    reference = statistics.median(values) if enough else (values[-1] if values else None)
    if reference:
        change = value / reference - 1.0
        against = "its median" if enough else "the previous run"
        if not enough and abs(change) >= threshold:
            notes.append(f"{change:+.0%} against {against}")
        elif enough and change <= -threshold:
            notes.append(f"{change:+.0%} against {against}: faster; a different machine?")
    if _quick(row):
        notes.append("quick-measure run: noisy")
    elif any(_quick(r) for r in earlier):
        notes.append("earlier runs include quick-measure ones")
    return notes


def _judge_latency(
    row: Mapping[str, Any], earlier: Sequence[Mapping[str, Any]], s: RegressionSettings
) -> list[Comparison]:
    out = []
    for figure, threshold in zip(_LATENCIES, (s.threshold, s.tail_threshold), strict=True):
        values = [r[figure] for r in earlier if r[figure] is not None]
        median = statistics.median(values) if values else None
        enough = len(values) >= s.min_history
        value = row[figure]
        regressed = bool(enough and median and value > median * (1 + threshold))
        notes = [] if enough else [f"not judged: {len(values)} earlier of {s.min_history} needed"]
        notes += _comments(row, earlier, value, values, threshold, enough)
        note = "; ".join(notes)
        out.append(_comparison(row, figure, value, median, len(values), regressed, note, enough))
    return out


def _judge_drop(
    row: Mapping[str, Any], earlier: Sequence[Mapping[str, Any]], s: RegressionSettings
) -> Comparison | None:
    values = [r["metric_drop"] for r in earlier if r["metric_drop"] is not None]
    if row["metric_drop"] is None:
        return None
    if len(values) < s.min_history:
        note = f"not judged: {len(values)} earlier of {s.min_history} needed"
        drop = row["metric_drop"]
        return _comparison(row, "metric_drop", drop, None, len(values), False, note, False)
    median = statistics.median(values)
    regressed = row["metric_drop"] > median + s.drop_tolerance
    return _comparison(row, "metric_drop", row["metric_drop"], median, len(values), regressed)


def _comparison(
    row: Mapping[str, Any],
    figure: str,
    value: float | None,
    median: float | None,
    history: int,
    regressed: bool,
    note: str = "",
    judged: bool = True,
) -> Comparison:
    return Comparison(
        row["learner"],
        row["model_name"],
        row["hardware_type"],
        row["role"],
        candidate_label(row),
        figure,
        value,
        median,
        history,
        regressed,
        note,
        judged,
    )


def _same_point(row: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    point = ("load_batch_size", "concurrency")
    return all(other.get(name) == row.get(name) for name in point)


def _budget_s(row: Mapping[str, Any]) -> float | None:
    """The run's latency budget in seconds (on the tail percentile), when it set one."""
    budget = json.loads(row.get("settings") or "{}").get("latency_budget_ms")
    return float(budget) / 1e3 if isinstance(budget, int | float) else None


def _judge_serving(
    row: Mapping[str, Any], earlier: Sequence[Mapping[str, Any]], s: RegressionSettings
) -> list[Comparison]:
    """An operating point's figures (rows measured at a load point), against the earlier
    measurements at the same point: ``throughput`` regresses when it falls by more than
    ``threshold``; the per-request ``latency_p99_s`` when it rises by more than
    ``tail_threshold``, or, whatever the history, when the tail is over the run's budget."""
    if row.get("load_batch_size") is None:
        return []
    same = [r for r in earlier if _same_point(row, r)]
    out = []
    for figure, lower_is_worse in (("throughput", True), ("latency_p99_s", False)):
        value = row.get(figure)
        values = [r[figure] for r in same if r.get(figure) is not None]
        if value is None:
            continue
        median = statistics.median(values) if values else None
        enough = len(values) >= s.min_history
        if lower_is_worse:
            regressed = bool(enough and median and value < median * (1 - s.threshold))
        else:
            regressed = bool(enough and median and value > median * (1 + s.tail_threshold))
        notes = [] if enough else [f"not judged: {len(values)} earlier of {s.min_history} needed"]
        budget, tail = _budget_s(row), row.get("latency_tail_s")
        if not lower_is_worse and budget is not None and tail is not None and tail > budget:
            pct = f"p{float(row.get('latency_percentile') or 99):g}"
            notes = [f"{pct} {tail * 1e3:.3g} ms is over the budget of {budget * 1e3:g} ms"]
            regressed = enough = True
        note = "; ".join(notes)
        out.append(_comparison(row, figure, value, median, len(values), regressed, note, enough))
    return out


def _judge(
    row: Mapping[str, Any], earlier: Sequence[Mapping[str, Any]], s: RegressionSettings
) -> list[Comparison]:
    complete = [r for r in earlier if r["status"] == "complete"][-s.window :]
    if row["status"] != "complete":
        # A figure that measured fine before and now fails (or drifts past the accuracy
        # threshold) is the worst regression of all; judged from a single earlier success.
        why = f"{row['status']}: {row['reason'][:300]}"
        # With no earlier success a failure is not a regression; an operating point over
        # its budget or memory cap (infeasible) breaks the SLO whatever the history.
        judged = bool(complete) or row["status"] == "infeasible"
        return [_comparison(row, "status", None, None, len(complete), judged, why, judged)]
    found = _judge_latency(row, complete, s) + _judge_serving(row, complete, s)
    drop = _judge_drop(row, complete, s)
    return found + ([drop] if drop else [])


def compare_run(
    rows: Iterable[Mapping[str, Any]], run_id: str, settings: RegressionSettings | None = None
) -> list[Comparison]:
    """Every figure that run ``run_id`` re-measured, judged against the runs before it.

    ``rows`` are history rows (``read_history(...).to_pylist()``), in any order.
    """
    settings = settings or RegressionSettings()
    series: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["run_kind"] == "rebench" and row["role"] in _SERIES_ROLES:
            series[_key(row)].append(row)
    found: list[Comparison] = []
    for members in series.values():
        members.sort(key=lambda r: r["time"])
        for index, row in enumerate(members):
            if row["run_id"] != run_id:
                continue
            earlier = [r for r in members[:index] if r["run_id"] != run_id]
            found.extend(_judge(row, earlier, settings))
    return sorted(found, key=lambda c: (c.learner, c.hardware_type, c.role, c.figure))
