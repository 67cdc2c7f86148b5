"""What a searcher is told of a result under an objective: the value a study minimizes, the
tail latency a budget applies to, and how far a point is over the constraints.

One value for every objective, in seconds and minimized, so that the searchers, their
pruning bar and the driver's best-so-far work alike: one call's p50 for the latency objective
(Speedster's), seconds per request (1 / throughput) for throughput and cost (one hardware
type's price is the same whatever the point, so the cheapest point is the fastest).
"""

from __future__ import annotations

from speedster_dist.records import LatencyStats, TrialResult, TrialStatus
from speedster_dist.serving import MemoryUsage, Objective, ThroughputStats

__all__ = ["constraint_values", "infeasibility", "objective_value", "tail_s"]

_LATENCY_TAILS = {50.0: "p50", 90.0: "p90", 99.0: "p99"}


def objective_value(result: TrialResult, objective: Objective) -> float | None:
    """The seconds ``result`` is ranked by (lower is better); None when it has no figure."""
    if objective.serves_load:
        stats = result.throughput
        return 1.0 / stats.throughput if stats is not None else None
    return result.latency.p50 if result.latency is not None else None


def tail_s(
    latency: LatencyStats | None, throughput: ThroughputStats | None, objective: Objective
) -> float | None:
    """The latency a budget applies to: the ``percentile``-th per-request latency of a load
    point, or one call's p50/p90/p99 for the latency objective."""
    if throughput is not None:
        return throughput.tail_s
    if latency is None:
        return None
    return float(getattr(latency, _LATENCY_TAILS[float(objective.percentile)]))


def infeasibility(
    latency: LatencyStats | None,
    throughput: ThroughputStats | None,
    memory: MemoryUsage | None,
    objective: Objective,
) -> str:
    """Why a measured point is infeasible under ``objective`` ("" when it is feasible):
    the trial runner's verdict."""
    tail = tail_s(latency, throughput, objective)
    if tail is None:
        return ""
    return "; ".join(objective.violations(tail, memory))


def constraint_values(result: TrialResult, objective: Objective) -> tuple[float, float]:
    """(ms over the latency budget, MB over the memory cap) of a measured result, <= 0 where
    met, as Optuna's constraints take them; (0, 0) for a result without figures."""
    measured = result.status in (TrialStatus.COMPLETE, TrialStatus.INFEASIBLE)
    tail = tail_s(result.latency, result.throughput, objective) if measured else None
    if tail is None:
        return 0.0, 0.0
    return objective.constraint_values(tail, result.memory)
