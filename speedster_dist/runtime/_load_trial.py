"""A trial's load point: the candidate served at ``batch_size`` requests per call with
``concurrency`` calls in flight, through its backend's runner (docs/throughput.md).

:func:`~._trial.run_trial` calls it for the throughput and cost objectives, once the
candidate is built and its outputs checked at the samples' shapes. A candidate that may
refuse the batch (built for fixed shapes, or a model whose batch axis is static) is built
again for it (``backends.source_for_batch``) and that build's outputs are checked as well,
request by request on the tiled batch against the original's: it is the build that is
measured, saved and served. Requests are the held-out samples, taken in turn
(``measure.tile_batch``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from speedster_dist.backends import (
    Compiled,
    SourceModel,
    UnsupportedCandidate,
    builds_per_batch,
    runner_for,
    source_for_batch,
)
from speedster_dist.measure import MemoryWatch, measure_load, request_latencies, tile_batch
from speedster_dist.records import Candidate, LatencyStats
from speedster_dist.runtime._payload import PRUNE_MIN_CALLS, TrialPayload, judge_outputs
from speedster_dist.serving import LoadPoint, ThroughputStats

__all__ = [
    "TAIL_MIN_CALLS",
    "TAIL_MIN_REQUESTS",
    "LoadPruner",
    "TailGuard",
    "latency_of",
    "measure_point",
    "serving_build",
]

Build = Callable[[SourceModel], Compiled]
# A load point's tail is judged against the latency budget once this many calls, and this
# many requests, have finished (batch 1: 8 calls; batch 8 or 32: 3 calls).
TAIL_MIN_CALLS = 3
TAIL_MIN_REQUESTS = PRUNE_MIN_CALLS


@dataclass
class LoadPruner:
    """Stops a load point once, after :data:`PRUNE_MIN_CALLS` calls, its seconds per request
    so far are over ``bar_s`` (it cannot serve more than the best point known)."""

    bar_s: float | None
    pruned: bool = False
    rate: float = 0.0  # requests a second when it stopped

    def should_stop(self, latencies: Sequence[float], batch_size: int, seconds: float) -> bool:
        calls = len(latencies)
        if self.bar_s is None or calls < PRUNE_MIN_CALLS or seconds <= 0:
            return False
        self.rate = calls * batch_size / seconds
        self.pruned = 1.0 / self.rate > self.bar_s
        return self.pruned


@dataclass
class TailGuard:
    """Stops a load point whose tail is clearly over the latency budget ``budget_s``.

    Once :data:`TAIL_MIN_CALLS` calls and :data:`TAIL_MIN_REQUESTS` requests have finished,
    the point stops when the median of their per-request latencies (each request's wait for
    its batch to fill included, at the rate so far), or the ``percentile``-th where that is
    lower, is already over the budget: at least half the requests so far are over it, so the
    budget's percentile cannot come back within it; timing the rest of the minimum duration
    would only confirm it. The point is then INFEASIBLE, with the figures of its calls so far.
    """

    budget_s: float | None
    percentile: float = 99.0
    stopped: bool = False
    calls: int = 0  # finished calls when it stopped
    level_s: float = 0.0  # the per-request latency judged when it stopped

    def should_stop(self, latencies: Sequence[float], batch_size: int, seconds: float) -> bool:
        calls = len(latencies)
        if self.budget_s is None or seconds <= 0 or calls < TAIL_MIN_CALLS:
            return False
        if calls * batch_size < TAIL_MIN_REQUESTS:
            return False
        requests = request_latencies(latencies, batch_size, calls * batch_size / seconds)
        level = float(np.percentile(requests, min(self.percentile, 50.0)))
        if level > self.budget_s:
            self.stopped, self.calls, self.level_s = True, calls, level
        return self.stopped

    @property
    def reason(self) -> str:
        """Why it stopped ("" while it has not)."""
        if not self.stopped:
            return ""
        which = "median" if self.percentile >= 50 else f"p{self.percentile:g}"
        return (
            f"stopped after {self.calls} calls: their {which} per-request latency "
            f"{self.level_s * 1e3:.4g} ms is over the latency budget of "
            f"{(self.budget_s or 0.0) * 1e3:.4g} ms"
        )


def _rows(samples: list[tuple[Any, ...]], batch_size: int) -> list[int]:
    """Rows of each request of a batch (the samples taken in turn)."""
    return [int(samples[i % len(samples)][0].shape[0]) for i in range(batch_size)]


def _split(outputs: tuple[Any, ...], rows: list[int]) -> list[tuple[Any, ...]]:
    """A batch's outputs, request by request (every output must be batch-major)."""
    total = sum(rows)
    for index, output in enumerate(outputs):
        if not isinstance(output, torch.Tensor) or output.dim() == 0 or output.shape[0] != total:
            raise UnsupportedCandidate(
                f"output {index} of a batch of {total} rows is not batched along axis 0: its "
                "requests' outputs cannot be told apart"
            )
    pieces = [torch.split(o.detach().cpu(), rows, dim=0) for o in outputs]
    return [tuple(piece[i] for piece in pieces) for i in range(len(rows))]


def _batch_drop(
    compiled: Compiled, payload: TrialPayload, candidate: Candidate, batch: tuple[Any, ...]
) -> tuple[float, str]:
    """A per-batch build judged request by request against the original's outputs."""
    size = candidate.batch_size
    count = len(payload.validation)
    samples = [payload.validation[i % count] for i in range(size)]
    references = [payload.reference_outputs[i % count] for i in range(size)]
    labels = [payload.labels[i % count] for i in range(size)] if payload.labels else None
    outputs = _split(tuple(compiled(*batch)), _rows(payload.validation, size))
    return judge_outputs(payload, candidate, samples, references, outputs, labels)


def serving_build(
    build: Build, payload: TrialPayload, candidate: Candidate, compiled: Compiled
) -> tuple[Compiled, tuple[Any, ...], str]:
    """The build that serves ``candidate``'s load point, its batch of requests, and why it
    is rejected ("" when it is not): ``compiled`` itself when it takes any batch, else a
    build for the batch (``build(source)``), whose outputs are checked first."""
    batch = tile_batch(payload.validation, payload.source.input_names, candidate.batch_size)
    example = tuple(tuple(t.shape) for t in payload.source.example_inputs)
    if not builds_per_batch(payload.source, compiled) or example == tuple(b.shape for b in batch):
        return compiled, batch, ""
    rebuilt = build(source_for_batch(payload.source, batch))
    _, rejection = _batch_drop(rebuilt, payload, candidate, batch)
    return rebuilt, batch, rejection and f"built for batch {candidate.batch_size}: {rejection}"


def measure_point(
    compiled: Compiled,
    batch: tuple[Any, ...],
    point: LoadPoint,
    payload: TrialPayload,
    watch: MemoryWatch,
    pruner: LoadPruner,
    guard: TailGuard | None = None,
) -> ThroughputStats:
    """Measure ``point`` through the backend's runner; ``watch`` (started before the build)
    gives the candidate's peak memory. ``guard`` stops a point clearly over the latency
    budget (checked first), ``pruner`` one that cannot beat the best known."""
    tail = guard or TailGuard(None)

    def should_stop(latencies: Sequence[float], batch_size: int, seconds: float) -> bool:
        return tail.should_stop(latencies, batch_size, seconds) or pruner.should_stop(
            latencies, batch_size, seconds
        )

    runner = runner_for(compiled, point.concurrency)
    try:
        return measure_load(
            runner,
            batch,
            point,
            payload.measure,
            payload.objective.percentile,
            memory=watch,
            should_stop=should_stop,
        )
    finally:
        runner.close()


def latency_of(stats: ThroughputStats) -> LatencyStats:
    """A load point's per-request latencies (the batch-fill wait included) as the figures a
    trial records."""
    return LatencyStats(
        count=stats.requests,
        mean=stats.mean_s,
        std=stats.std_s,
        p50=stats.p50_s,
        p90=stats.p90_s,
        p99=stats.p99_s,
        min=stats.min_s,
        total_s=stats.duration_s,
    )
