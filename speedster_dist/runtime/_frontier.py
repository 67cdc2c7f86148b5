"""Each hardware type's frontier: throughput against tail latency, from the load points its
trials measured in full (feasible or not), as a :class:`~speedster_dist.serving.FrontierPoint`
Pareto set (``SearchOutcome.frontiers``)."""

from __future__ import annotations

from collections.abc import Iterable

from speedster_dist.records import TrialResult, TrialStatus
from speedster_dist.serving import FrontierPoint, pareto_front

__all__ = ["LOAD_NOT_CONFIRMED", "frontier_point", "frontiers"]

# Why a throughput or cost search keeps the search's figures: the confirmation re-times one
# call at a time, which is not what such a winner was chosen for.
LOAD_NOT_CONFIRMED = (
    "not re-timed: the confirmation times one call at a time, and this winner was chosen "
    "for its load point (its figures are the search's)"
)


def frontier_point(result: TrialResult) -> FrontierPoint | None:
    """``result`` as a point of its type's frontier; None unless it measured a load point
    in full (complete or infeasible)."""
    stats = result.throughput
    measured = result.status in (TrialStatus.COMPLETE, TrialStatus.INFEASIBLE)
    if stats is None or not measured:
        return None
    memory = result.memory.candidate_mb if result.memory is not None else None
    return FrontierPoint(
        label=result.candidate.label,
        point=stats.point,
        throughput=stats.throughput,
        tail_s=stats.tail_s,
        p99_s=stats.p99_s,
        percentile=stats.percentile,
        memory_mb=memory,
        feasible=result.status is TrialStatus.COMPLETE,
        reason=result.reason,
    )


def frontiers(results: Iterable[TrialResult]) -> dict[str, tuple[FrontierPoint, ...]]:
    """Per hardware key with load points, the Pareto set of its measured points, lowest tail
    latency first."""
    points: dict[str, list[FrontierPoint]] = {}
    for result in results:
        point = frontier_point(result)
        if point is not None:
            points.setdefault(result.candidate.hardware_key, []).append(point)
    return {key: pareto_front(found) for key, found in points.items()}
