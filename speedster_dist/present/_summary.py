"""The tables users read: Speedster's summary per hardware type, and every trial on request."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from speedster_dist.cost import PriceTable, cost_rows
from speedster_dist.present._format import ms, render_table
from speedster_dist.present._generation import generation_rows
from speedster_dist.present._points import (
    fleet_load_cells,
    format_costs,
    load_point_lines,
    most_served_line,
    served,
)
from speedster_dist.records import Confirmation, ConfirmedLatency, SearchOutcome, TrialResult

__all__ = [
    "format_costs",
    "format_fleet",
    "format_summary",
    "format_trials",
    "metric_line",
    "progress_line",
]

_STYLES = {
    "complete": "green",
    "failed": "red",
    "rejected": "yellow",
    "infeasible": "yellow",
    "n/a": "dim",
}
# Why the original has a metric drop at all: it is measured like every candidate.
_ORIGINAL_DROP = (
    "The original's metric drop compares the original as run on each hardware type with its "
    "outputs computed before the search: numerical noise (threads, kernels), not a loss."
)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], styled: bool = False) -> str:
    return render_table(headers, rows, styled=styled, styles=_STYLES)


def _ms(result: TrialResult | None) -> str:
    return ms(result.latency.p50 if result and result.latency else None, "n/a", decimals=2)


def _throughput(result: TrialResult | None, batch: int) -> float | None:
    """Samples a second: measured at the result's load point, else derived from its p50."""
    if result is not None and result.throughput is not None:
        return result.throughput.throughput * batch
    return batch / result.latency.p50 if result and result.latency else None


def _drop(result: TrialResult | None) -> str:
    return "n/a" if result is None or result.metric_drop is None else f"{result.metric_drop:.4g}"


def _ratio(a: float | None, b: float | None, suffix: str = "x") -> str:
    return f"{a / b:.2f}{suffix}" if a and b else "n/a"


def _latency_name(best: TrialResult) -> str:
    """A load point's p50 is per request (its batch's wait included), one call's per batch."""
    return "latency (p50 per request)" if best.throughput else "latency (p50 per batch)"


def _latency_ratio(base: TrialResult | None, best: TrialResult) -> str:
    """The p50 ratio, not given between two different load points (requests that wait for a
    batch of 32 against a batch of 1: not a speed-up)."""
    if base is not None and base.throughput and best.throughput:
        theirs, mine = base.throughput.point, best.throughput.point
        if (theirs.batch_size, theirs.concurrency) != (mine.batch_size, mine.concurrency):
            return "(other load points)"
    base_lat = base.latency.p50 if base and base.latency else None
    return _ratio(base_lat, best.latency.p50 if best.latency else None)


def _hardware_rows(base: TrialResult | None, best: TrialResult, batch: int) -> list[list[str]]:
    base_tp, best_tp = _throughput(base, batch), _throughput(best, batch)
    return [
        ["backend", base.candidate.backend if base else "n/a", best.candidate.backend, ""],
        ["precision / technique", "fp32", best.candidate.label.split(" ", 1)[1], ""],
        [_latency_name(best), _ms(base), _ms(best), _latency_ratio(base, best)],
        [
            "throughput (samples/s)",
            f"{base_tp:.1f}" if base_tp else "n/a",
            f"{best_tp:.1f}" if best_tp else "n/a",
            _ratio(best_tp, base_tp),
        ],
        [
            "model size (MB)",
            f"{base.model_size_mb:.1f}" if base else "n/a",
            f"{best.model_size_mb:.1f}",
            _ratio(base.model_size_mb if base else None, best.model_size_mb),
        ],
        ["metric drop", _drop(base), _drop(best), ""],
    ]


def _confirmed_rows(
    confirmation: Confirmation, base: TrialResult | None, best: TrialResult, batch: int
) -> list[list[str]]:
    """The latency and throughput rows from the confirmed figures, with their spread."""
    mine, theirs = confirmation.of(best.candidate), confirmation.baseline
    speedup = confirmation.speedup(best.candidate)
    if mine is None or theirs is None or speedup is None or base is None:
        return []

    def spread(entry: ConfirmedLatency) -> str:
        return f"{ms(entry.p50, decimals=2)} ({entry.low * 1e3:.2f}-{entry.high * 1e3:.2f})"

    ratio, low, high = speedup
    return [
        [
            "latency (p50 per batch)",
            spread(theirs),
            spread(mine),
            f"{ratio:.2f}x ({low:.2f}-{high:.2f})",
        ],
        [
            "throughput (samples/s)",
            f"{batch / theirs.p50:.1f}",
            f"{batch / mine.p50:.1f}",
            f"{ratio:.2f}x",
        ],
    ]


def _speedup_note(outcome: SearchOutcome, key: str) -> str:
    confirmation = outcome.confirmed.get(key)
    if confirmation is not None:
        return (
            f"\n  speedup confirmed: the baseline and {len(confirmation.entries) - 1} best "
            f"candidate(s) re-timed side by side, {confirmation.rounds} alternating rounds on "
            f"one node; figures are the median of the round medians (lowest-highest round)"
        )
    if key in outcome.not_confirmed:
        return f"\n  speedup not confirmed ({outcome.not_confirmed[key]}): search figures"
    return ""


def metric_line(metric: str, drop_ths: float | None) -> str:
    """Which metric judged the candidates, and the drop it accepted."""
    accepted = "no reduced precision" if not drop_ths else f"drop <= {drop_ths:g}"
    return f"Candidates judged by metric {metric!r} ({accepted}) on held-out samples"


def format_summary(
    outcome: SearchOutcome,
    batch_size: int = 1,
    metric: str | None = None,
    metric_drop_ths: float | None = None,
    prices: PriceTable | None = None,
    styled: bool = False,
    loads: Mapping[str, str] | None = None,
) -> str:
    """Speedster's summary table, one per hardware type, then the fleet-wide view (the
    speedup is the confirmed one when the winners were re-timed: the table says so); with
    ``metric`` (a built-in metric's name or "custom"), a first line names the judge; with
    ``prices``, each winner's cost per 1M inferences; ``loads``: per hardware type, what a
    saved learner loads there by default when that is not the winner (a program winner);
    ``styled`` for a terminal (colours, rounded boxes), else plain ASCII that logs and tests
    can parse."""
    blocks = [metric_line(metric, metric_drop_ths)] if metric else []
    for key, hardware in outcome.hardware.items():
        title = f"Hardware type {key}: {hardware.description}"
        best = outcome.winners.get(key)
        if best is None:
            why = outcome.no_winner.get(key, "unknown")
            blocks.append(f"{title}\n  no winner: {why}{load_point_lines(outcome, key)}")
            continue
        base = outcome.baseline(key)
        rows = _hardware_rows(base, best, batch_size)
        confirmation = outcome.confirmed.get(key)
        confirmed = _confirmed_rows(confirmation, base, best, batch_size) if confirmation else []
        if confirmed:
            rows[2:4] = confirmed
        if best.generation is not None:  # one call is one whole generate()
            rows[2][0], rows[3][0] = "generate() time (p50)", "generations/s"
            rows += generation_rows(base, best)  # tokens/s, TTFT, TPOT, agreement
        header = "improvement"
        if confirmed or key in outcome.not_confirmed:
            header += " (confirmed)" if confirmed else " (not confirmed)"
        table = _table(["metric", "original", "optimized", header], rows, styled)
        skipped = "".join(f"\n  not tried: {line}" for line in outcome.skipped.get(key, []))
        if best.fixed_shapes:  # the learner refuses other shapes with a ShapeError
            shapes = ", ".join(f"{n} {list(s)}" for n, s in best.fixed_shapes)
            skipped += f"\n  fixed shapes: {best.candidate.backend} takes only {shapes}"
        skipped += _notes(outcome, key) + load_point_lines(outcome, key)
        if loads and key in loads:
            skipped += f"\n  loads by default: {loads[key]}"
        blocks.append(f"{title}\n{table}{_speedup_note(outcome, key)}{skipped}")
    if len(outcome.hardware) > 1:
        blocks.append(format_fleet(outcome, styled))
    blocks.extend(_missing_groups(outcome))
    blocks.extend(_costs(outcome, batch_size, prices))
    exhausted = (
        "\n(the optimization_time budget ran out; results are the best found)"
        if outcome.budget_exhausted
        else ""
    )
    noise = f"\n\n{_ORIGINAL_DROP}" if outcome.winners else ""
    wall = f"\n\nSearch wall time: {outcome.wall_s:.1f} s{exhausted}"
    return "\n\n".join(blocks) + noise + wall


def _notes(outcome: SearchOutcome, key: str) -> str:
    """The notes of this hardware type's trials, each once (e.g. int8 on few distinct samples),
    then what the accuracy back-off tried."""
    notes = (n for r in outcome.results if r.candidate.hardware_key == key for n in r.notes)
    return "".join(f"\n  note: {note}" for note in dict.fromkeys(notes)) + _backoff_note(
        outcome, key
    )


def _backoff_note(outcome: SearchOutcome, key: str) -> str:
    """The accuracy back-off steps of this hardware type (``backoff_after`` in a trial's
    extra): each retried candidate and how it ended."""
    steps = [
        r
        for r in outcome.results
        if r.candidate.hardware_key == key and any(k == "backoff_after" for k, _ in r.extra)
    ]
    if not steps:
        return ""
    tried = ", ".join(f"{r.candidate.label}: {r.status.value}" for r in steps)
    return (
        f"\n  note: {len(steps)} candidate(s) rejected for their metric drop were retried "
        f"keeping more layers in higher precision ({tried})"
    )


def _costs(outcome: SearchOutcome, batch: int, prices: PriceTable | None) -> list[str]:
    """Cost per 1M inferences of each winner, the fastest and the cheapest type."""
    if prices is None:
        return []
    text = format_costs(cost_rows(served(outcome, batch), prices), prices, outcome.objective)
    return [text] if text else []


def _missing_groups(outcome: SearchOutcome) -> list[str]:
    """The declared node groups that never came up, and why (never silent)."""
    if not outcome.missing_groups:
        return []
    lines = [f"  {name}: {why}" for name, why in sorted(outcome.missing_groups.items())]
    return ["Node groups that never came up (not searched):\n" + "\n".join(lines)]


def _fleet_note(outcome: SearchOutcome, key: str) -> str:
    notes = []
    if key in outcome.joined_late:
        notes.append("joined mid-search")
    if key in outcome.lost:
        notes.append("its nodes left mid-search")
    if key not in outcome.winners:
        notes.append(f"no winner: {outcome.no_winner.get(key, 'unknown')}")
    retried = sum(
        1
        for r in outcome.results
        if r.candidate.hardware_key == key and any(k == "retried_after" for k, _ in r.extra)
    )
    if retried:
        notes.append(f"{retried} trial(s) retried after a node left")
    return "; ".join(notes)


def format_fleet(outcome: SearchOutcome, styled: bool = False) -> str:
    """One row per hardware type (winner, latency, speedup over the baseline measured on
    that same hardware, metric drop), then the fleet-wide fastest type for this model."""
    rows = []
    for key in outcome.hardware:
        best, base = outcome.winners.get(key), outcome.baseline(key)
        best_lat = best.latency.p50 if best and best.latency else None
        base_lat = base.latency.p50 if base and base.latency else None
        winner = best.candidate.label if best else "-"
        note = _fleet_note(outcome, key)
        speedup = _ratio(base_lat, best_lat)
        if best is not None and best.throughput is not None and base and base.throughput:
            # each at its own load point: how many times the baseline's requests a second
            speedup = _ratio(best.throughput.throughput, base.throughput.throughput)
        confirmation = outcome.confirmed.get(key)
        confirmed = confirmation.speedup(best.candidate) if confirmation and best else None
        if confirmed is not None:
            speedup = f"{confirmed[0]:.2f}x confirmed"
        rows.append([key, winner, _ms(best), speedup, _drop(best), note])
    headers = ["hardware type", "winner", "latency (p50)", "speedup", "metric drop", "note"]
    if outcome.objective.serves_load:  # what each winner serves, at its operating point
        headers[3:3] = ["requests/s", "p99"]
        for row, key in zip(rows, outcome.hardware, strict=True):
            row[3:3] = fleet_load_cells(outcome.winners.get(key))
    lines = [f"Fleet: {len(outcome.hardware)} hardware types", _table(headers, rows, styled)]
    lines += most_served_line(outcome)
    timed = [r for r in outcome.winners.values() if r.latency]
    if timed:
        fastest = min(timed, key=lambda r: r.latency.p50 if r.latency else float("inf"))
        lines.append(
            f"Fastest hardware type for this model: {fastest.candidate.hardware_key} "
            f"({fastest.candidate.label}, {_ms(fastest)})"
        )
    return "\n".join(lines)


def format_trials(results: Sequence[TrialResult], styled: bool = False) -> str:
    """Every trial with its status, latency, metric drop and reason."""
    rows = []
    for r in results:
        p90 = f"{r.latency.p90 * 1e3:.2f}" if r.latency else ""
        rows.append(
            [
                r.candidate.hardware_key,
                r.candidate.label + (" (baseline)" if r.is_baseline else ""),
                r.status.value,
                _ms(r) if r.latency else "",
                p90,
                _drop(r),
                f"{r.build_s:.1f}",
                r.node_id[:8],
                r.reason[:80].replace("\n", " "),
            ]
        )
    headers = [
        "hardware",
        "candidate",
        "status",
        "p50",
        "p90 ms",
        "drop",
        "build s",
        "node",
        "reason",
    ]
    return _table(headers, rows, styled)


def progress_line(done: int, result: TrialResult) -> str:
    """One line per finished trial, for the progress display."""
    extra = f" {_ms(result)}" if result.latency else f" ({result.reason[:60]})"
    candidate = result.candidate
    status = result.status.value
    return f"[trial {done}] {candidate.hardware_key} {candidate.label}: {status}{extra}"
