"""Load points on a known curve, without measuring anything: search and driver tests check
which point wins, and which frontier results, against arithmetic.

:class:`LoadCurve` says what a candidate serves at a load point: a call of ``b`` requests
takes ``(base_s + per_request_s * b) * slowdown / (speed[backend] * hardware_speed[type])``;
up to ``lanes`` calls overlap fully, more queue. :class:`CurveExecutor` is an executor whose
trials are those figures (complete, or infeasible over the objective's constraints), for
``run_search``; a candidate without a load point (the latency objective) is one call of one
request.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from speedster_dist.records import (
    Candidate,
    HardwareType,
    LatencyStats,
    SavedCandidate,
    TrialResult,
    TrialStatus,
)
from speedster_dist.runtime import (
    Executor,
    HardwareGroup,
    NodeProbe,
    TrialOutcome,
    TrialPayload,
    failed_result,
)
from speedster_dist.serving import MemoryUsage, Objective, Overlap, ThroughputStats

__all__ = ["CurveExecutor", "LoadCurve"]

_OVERLAP = Overlap("curve lanes", overlaps=True, note="arithmetic, nothing runs")
_SAVED = SavedCandidate("curve", "cpu", {}, {"model.bin": b"curve"})


@dataclass(frozen=True)
class LoadCurve:
    """What every candidate serves, as arithmetic (see the module)."""

    base_s: float = 0.002
    per_request_s: float = 0.002
    lanes: int = 2
    speed: Mapping[str, float] = field(default_factory=dict)  # backend -> speed-up
    hardware_speed: Mapping[str, float] = field(default_factory=dict)  # hardware key -> speed-up
    base_mb: float = 100.0
    mb_per_request: float = 10.0  # memory grows with the requests in flight

    def call_s(self, candidate: Candidate, batch_size: int) -> float:
        slowdown = float(dict(candidate.knobs).get("slowdown", 1))
        speed = self.speed.get(candidate.backend, 1.0)
        speed *= self.hardware_speed.get(candidate.hardware_key, 1.0)
        return (self.base_s + self.per_request_s * batch_size) * slowdown / speed

    def stats(self, candidate: Candidate, percentile: float = 99.0) -> ThroughputStats:
        """The figures of ``candidate``'s load point; the tail is the last request of the
        batch's full wait (as ``measure_load`` counts it) plus one call."""
        point = candidate.load_point
        assert point is not None, "a load point's candidate"
        batch, flight = point.batch_size, point.concurrency
        call = self.call_s(candidate, batch) * max(flight / self.lanes, 1.0)
        throughput = flight * batch / call
        tail = (batch - 1) / throughput + call
        memory = self.memory(candidate)
        return ThroughputStats(
            point=point,
            requests=batch * 64,
            calls=64,
            duration_s=64 * batch / throughput,
            throughput=throughput,
            mean_s=call,
            p50_s=call,
            p90_s=tail,
            p99_s=tail,
            percentile=percentile,
            tail_s=tail,
            call_p50_s=call,
            max_in_flight=flight,
            overlap=_OVERLAP,
            memory=memory,
        )

    def memory(self, candidate: Candidate) -> MemoryUsage:
        flight = candidate.batch_size * max(candidate.concurrency, 1)
        return MemoryUsage(500.0 + self.base_mb + self.mb_per_request * flight, 500.0)

    def result(
        self, candidate: Candidate, objective: Objective, is_baseline: bool = False
    ) -> TrialResult:
        """``candidate``'s trial: COMPLETE, or INFEASIBLE over ``objective``'s constraints;
        without a load point (the latency objective) one call of one request, COMPLETE."""
        if candidate.load_point is None:
            call = self.call_s(candidate, 1)
            one = LatencyStats(64, call, 0.0, call, call, call, call, 64 * call)
            return TrialResult(
                candidate, TrialStatus.COMPLETE, "", one, metric_drop=0.0, is_baseline=is_baseline
            )
        stats = self.stats(candidate, objective.percentile)
        latency = LatencyStats(
            64, stats.mean_s, 0.0, stats.p50_s, stats.p90_s, stats.p99_s, stats.p50_s, 1.0
        )
        why = "; ".join(objective.violations(stats.tail_s, stats.memory))
        status = TrialStatus.INFEASIBLE if why else TrialStatus.COMPLETE
        return TrialResult(
            candidate,
            status,
            why,
            latency,
            metric_drop=0.0,
            is_baseline=is_baseline,
            throughput=stats,
            memory=stats.memory,
        )


class CurveExecutor(Executor):
    """Trials answered from a :class:`LoadCurve` (no build, no clock), one per poll."""

    def __init__(self, curve: LoadCurve, probe: NodeProbe) -> None:
        self.curve = curve
        self._probe = probe
        self._objective = Objective()
        self._queue: deque[tuple[Candidate, bool]] = deque()
        self.submitted: list[tuple[Candidate, float | None]] = []  # (candidate, prune bar)

    def discover(self) -> list[HardwareGroup]:
        probe = self._probe
        return [HardwareGroup(h, (probe.node_id,), probe.catalog(h.key)) for h in probe.hardware]

    def joined(self) -> list[HardwareGroup]:
        return []

    def lost_types(self) -> dict[str, str]:
        return {}

    def prepare(self, payload: TrialPayload) -> None:
        self._objective = payload.objective

    def has_capacity(self, hardware_key: str) -> bool:
        return not self._queue

    def submit(
        self,
        candidate: Candidate,
        hardware: HardwareType,
        is_baseline: bool,
        prune_above_s: float | None = None,
    ) -> None:
        self._queue.append((candidate, is_baseline))
        self.submitted.append((candidate, prune_above_s))

    def poll(self, timeout_s: float) -> list[TrialOutcome]:
        if not self._queue:
            return []
        candidate, is_baseline = self._queue.popleft()
        return [TrialOutcome(self.curve.result(candidate, self._objective, is_baseline), _SAVED)]

    def in_flight(self) -> int:
        return len(self._queue)

    def cancel_all(self, reason: str) -> list[TrialOutcome]:
        cancelled = [TrialOutcome(failed_result(c, reason, "", b)) for c, b in self._queue]
        self._queue.clear()
        return cancelled

    def fetch(self, artifact: Any) -> SavedCandidate:
        assert isinstance(artifact, SavedCandidate)
        return artifact
