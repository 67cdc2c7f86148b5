"""Latency measurement, done once here and never inside a backend.

Follows MLPerf LoadGen practice: warm-up first, then time calls until *both* a minimum
count and a minimum duration are met (or a hard cap on duration is hit), with a monotonic
clock and an optional device synchronisation before each clock read.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from speedster_dist.records import LatencyStats

__all__ = ["MeasureSettings", "latency_stats", "measure_latency"]


@dataclass(frozen=True)
class MeasureSettings:
    """How long to time a candidate. Defaults give a trustworthy p90 (>= 64 samples)."""

    warmup_calls: int = 5
    warmup_s: float = 0.5
    min_calls: int = 64
    min_duration_s: float = 2.0
    max_duration_s: float = 30.0
    # Whether a confirmation round that saw more load than the machine had cores for is
    # repeated, then marked (``measure.overloaded``). Off only where the machine is known
    # to be shared and the figures do not matter (tests of other things).
    load_check: bool = True

    def __post_init__(self) -> None:
        if self.min_calls < 1 or self.min_duration_s < 0 or self.warmup_calls < 0:
            raise ValueError("measurement needs min_calls >= 1 and non-negative durations")
        if self.max_duration_s < self.min_duration_s:
            raise ValueError("max_duration_s must be at least min_duration_s")

    @property
    def brief(self) -> bool:
        """True when candidates are timed more briefly than the default (``quick()`` and
        the like): the history marks such runs as noisy."""
        default = MeasureSettings()
        fewer = self.min_calls < default.min_calls
        return fewer or self.min_duration_s < default.min_duration_s

    @classmethod
    def quick(cls) -> MeasureSettings:
        """A few timed calls instead of the trustworthy default: smoke tests only (the
        CLI's ``--quick-measure``); latencies are noisy and runs are marked as such."""
        return cls(
            warmup_calls=2, warmup_s=0.0, min_calls=10, min_duration_s=0.05, max_duration_s=2.0
        )


def latency_stats(samples_s: list[float]) -> LatencyStats:
    """Summarise per-call latencies (seconds)."""
    arr = np.asarray(samples_s, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return LatencyStats(
        count=len(samples_s),
        mean=float(arr.mean()),
        std=float(statistics.pstdev(samples_s)) if len(samples_s) > 1 else 0.0,
        p50=float(p50),
        p90=float(p90),
        p99=float(p99),
        min=float(arr.min()),
        total_s=float(arr.sum()),
    )


def measure_latency(
    call: Callable[[], object],
    settings: MeasureSettings = MeasureSettings(),
    synchronize: Callable[[], None] | None = None,
    on_step: Callable[[list[float]], bool] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> LatencyStats:
    """Time ``call`` and return its statistics.

    ``synchronize`` (e.g. ``torch.cuda.synchronize``) runs before each clock read so that
    asynchronous GPU work is counted. ``on_step`` is called with the latencies so far about
    every tenth of the minimum duration; returning True stops timing early (pruning).
    ``clock`` is injected by tests (a virtual clock that the fake call advances), so the
    stopping rules are checked exactly rather than against a loaded machine's wall clock.
    """
    sync = synchronize or (lambda: None)
    warm_end = clock() + settings.warmup_s
    for i in range(max(settings.warmup_calls, 1)):
        call()
        if i + 1 >= settings.warmup_calls and clock() >= warm_end:
            break
    sync()
    samples: list[float] = []
    start = clock()
    step_every = max(settings.min_duration_s / 10, 1e-3)
    next_step = start + step_every
    while True:
        t0 = clock()
        call()
        sync()
        t1 = clock()
        samples.append(t1 - t0)
        elapsed = t1 - start
        if len(samples) >= settings.min_calls and elapsed >= settings.min_duration_s:
            break
        if elapsed >= settings.max_duration_s:
            break
        if on_step is not None and t1 >= next_step:
            next_step = t1 + step_every
            if on_step(samples):
                break
    return latency_stats(samples)
