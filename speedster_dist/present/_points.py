"""The summary's fleet view of load points and costs: per hardware type, the best-latency
point and the best feasible throughput point of a throughput or cost search, and the cost
per 1M inferences of each winner at the throughput it was measured at (or derived from its
p50, said so)."""

from __future__ import annotations

from collections import Counter

from speedster_dist.cost import CostRow, PriceTable, Served, basis_note, fastest_and_cheapest
from speedster_dist.present._format import ms
from speedster_dist.records import SearchOutcome, TrialResult
from speedster_dist.serving import Objective

__all__ = ["fleet_load_cells", "format_costs", "load_point_lines", "most_served_line", "served"]


def _tail_name(percentile: float) -> str:
    return f"p{percentile:g}"


def _point_text(label: str, throughput: float, percentile: float, tail_s: float) -> str:
    tail = _tail_name(percentile)
    return f"{label}: {throughput:.4g} requests/s, {tail} {ms(tail_s)}"


def _budget_text(objective: Objective) -> str:
    tail = _tail_name(objective.percentile)
    budget = objective.latency_budget_ms
    return f"{tail} budget {budget:g} ms" if budget is not None else "no latency budget"


def load_point_lines(outcome: SearchOutcome, key: str) -> str:
    """Lines under a hardware type's table when its search measured load points: the point
    of the lowest tail latency (the frontier's first), the feasible point serving the most
    requests a second (the type's winner), and the baseline backend's best feasible point;
    "" for one call at a time (the latency objective)."""
    points = outcome.frontiers.get(key)
    if not points:
        return ""
    lowest = min(points, key=lambda p: (p.tail_s, -p.throughput))
    head = f"\n  load points ({outcome.objective.kind}, {_budget_text(outcome.objective)}):"
    low = _point_text(lowest.label, lowest.throughput, lowest.percentile, lowest.tail_s)
    lines = [head, f"\n    best latency:    {low}"]
    winner = outcome.winners.get(key)
    best = winner.throughput if winner is not None else None
    if winner is not None and best is not None:
        text = _point_text(winner.candidate.label, best.throughput, best.percentile, best.tail_s)
        lines.append(f"\n    best throughput: {text} (feasible)")
    else:
        why = lowest.reason or outcome.no_winner.get(key) or "over the limits"
        lines.append(f"\n    best throughput: none feasible ({why})")
    rate = best.throughput if best is not None else None
    return "".join(lines) + _baseline_line(outcome, key, rate)


def _baseline_line(outcome: SearchOutcome, key: str, best: float | None) -> str:
    """The baseline backend's best feasible point (fp32, no technique), and how many times
    as much the best point serves: what the search bought over the plain model."""
    base = outcome.baseline(key)
    if base is None:
        return ""
    arm = [
        r
        for r in outcome.results
        if r.candidate.hardware_key == key
        and r.candidate.backend == base.candidate.backend
        and r.candidate.precision == base.candidate.precision
        and not r.candidate.technique
    ]
    plain = [r for r in arm if r.ok and r.throughput is not None]
    top = max(plain, key=lambda r: r.throughput.throughput if r.throughput else 0.0, default=None)
    if top is None or top.throughput is None:
        counts = Counter(r.status.value for r in arm)
        said = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        return f"\n    baseline's best: no complete point ({base.candidate.backend}: {said})"
    stats = top.throughput
    gain = f" (best throughput {best / stats.throughput:.2f}x)" if best else ""
    text = _point_text(top.candidate.label, stats.throughput, stats.percentile, stats.tail_s)
    return f"\n    baseline's best: {text}{gain}"


def fleet_load_cells(winner: TrialResult | None) -> list[str]:
    """The fleet table's throughput and p99 cells of a type's winner at its load point."""
    stats = winner.throughput if winner is not None else None
    if stats is None:
        return ["-", "-"]
    return [f"{stats.throughput:.4g}", ms(stats.p99_s)]


def most_served_line(outcome: SearchOutcome) -> list[str]:
    """The type whose winner serves the most requests a second (load objectives only)."""
    loaded = [w for w in outcome.winners.values() if w.throughput is not None]
    if not loaded:
        return []
    best = max(loaded, key=lambda w: w.throughput.throughput if w.throughput else 0.0)
    assert best.throughput is not None
    return [
        f"Most throughput within the constraints: {best.candidate.hardware_key} "
        f"({best.candidate.label}, {best.throughput.throughput:.4g} requests/s, "
        f"p99 {ms(best.throughput.p99_s)})"
    ]


def served(outcome: SearchOutcome, batch_size: int = 1) -> list[Served]:
    """Each winner as :class:`~speedster_dist.cost.Served`: its measured throughput at its
    operating point (requests a second times the samples' ``batch_size``), else derived from
    one call's p50."""
    return [
        _served(key, result, outcome.node_groups.get(key), batch_size)
        for key, result in outcome.winners.items()
    ]


def _served(key: str, result: TrialResult, group: str | None, batch: int) -> Served:
    stats = result.throughput
    if stats is None:
        p50 = result.latency.p50 if result.latency else None
        return Served.from_p50(key, result.candidate.label, p50, group, batch)
    point = stats.point
    return Served(
        key,
        result.candidate.label,
        stats.throughput * batch,
        measured=True,
        p50_s=stats.p50_s,
        node_group=group,
        point=f"{point.batch_size}x{point.concurrency}",
        tail_s=stats.tail_s,
    )


def format_costs(
    rows: list[CostRow], prices: PriceTable, objective: Objective | None = None
) -> str:
    """Cost lines for a summary: every type's cost per 1M (and whether its throughput was
    measured at its operating point or derived from p50), then the fastest and cheapest
    (with ``objective``'s latency budget, the cheapest at that SLO: every winner meets it)."""
    if not rows:
        return ""
    lines = [
        f"Cost per 1M inferences ({prices.currency}, one node at list price; {basis_note(rows)}):"
    ]
    for row in sorted(rows, key=lambda r: (r.p50_s is None, r.p50_s or 0.0)):
        cost = f"{row.cost_per_1m:.4g}" if row.cost_per_1m is not None else "no price"
        price = f"{row.price_per_hour:g}/h" if row.price_per_hour is not None else "-"
        lines.append(
            f"  {row.hardware_type}: {cost} ({row.label}, {ms(row.p50_s, 'n/a')}, "
            f"{row.throughput_per_s:.4g}/s {row.basis}, {price})"
        )
    fastest, cheapest = fastest_and_cheapest(rows)
    if fastest is not None:
        lines.append(f"Fastest hardware type: {fastest.hardware_type}")
    if cheapest is not None:
        slo = ""
        if objective is not None and objective.latency_budget_ms is not None:
            slo = f" at the SLO ({_tail_name(objective.percentile)} <= "
            slo += f"{objective.latency_budget_ms:g} ms)"
        lines.append(
            f"Cheapest hardware type{slo}: {cheapest.hardware_type} "
            f"({cheapest.cost_per_1m:.4g} {prices.currency} per 1M inferences)"
        )
    return "\n".join(lines)
