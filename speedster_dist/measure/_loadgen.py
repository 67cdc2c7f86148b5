"""Load generation: throughput and per-request latency of one load point.

Done as MLPerf LoadGen's offline scenario and Triton's ``perf_analyzer`` concurrency mode do
it: a closed loop that keeps ``concurrency`` calls of ``batch_size`` requests in flight
through the backend's own runner (``speedster_dist.serving.Runner``), a new call submitted as
soon as one finishes. Warm-up first (at least ``warmup_calls`` and ``warmup_s``, then drained),
then calls are timed until *both* ``min_calls`` and ``min_duration_s`` are met, or
``max_duration_s`` is reached. Throughput is the requests served over the measured window,
from the first timed submission to the last completion.

Per-request latency counts the wait for the batch to fill: requests arrive evenly at the
measured throughput ``T``, so the ``i``-th request of a batch of ``b`` waits ``(b-1-i)/T``
before its call starts, then the call's own latency (submission to outputs). The fill wait is
derived from the measured rate, not observed: it is the least wait at which the point serves
``T`` requests a second. Timing is done here and nowhere else: runners never read a clock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from speedster_dist.measure._latency import MeasureSettings
from speedster_dist.measure._load import LoadWatch
from speedster_dist.measure._memory import MemoryWatch
from speedster_dist.serving import LoadPoint, Runner, ThroughputStats

__all__ = ["StopRule", "check_percentile", "measure_load", "request_latencies"]

Clock = Callable[[], float]
# Called after each timed call is issued with (the latencies of the calls finished so far,
# requests per call, seconds from the window's start to the last completion); True stops the
# measurement there (the trial runner's pruning and its latency-budget guard). Finished
# calls over that span is the rate the window measures.
StopRule = Callable[[Sequence[float], int, float], bool]


def check_percentile(percentile: object) -> float:
    """``percentile`` as a float in (0, 100], or a ValueError that says what was wrong."""
    if isinstance(percentile, bool) or not isinstance(percentile, int | float):
        raise ValueError(f"the latency percentile must be a number, got {percentile!r}")
    value = float(percentile)
    if not 0 < value <= 100:  # NaN fails too
        raise ValueError(f"the latency percentile must be in (0, 100], got {percentile!r}")
    return value


def request_latencies(call_latencies_s: Any, batch_size: int, throughput: float) -> np.ndarray:
    """Per-request latencies of calls serving ``batch_size`` requests each: every call's
    latency plus each request's wait for the batch to fill at ``throughput`` requests/s."""
    calls = np.asarray(call_latencies_s, dtype=np.float64)
    waits = (batch_size - 1 - np.arange(batch_size, dtype=np.float64)) / throughput
    return np.add.outer(calls, waits).ravel()


class _InFlight:
    """Keeps at most ``concurrency`` calls in flight and records each timed call's span."""

    def __init__(self, runner: Runner, concurrency: int, clock: Clock) -> None:
        self._runner = runner
        self._clock = clock
        self._slots = threading.Semaphore(concurrency)
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self.spans: list[tuple[float, float]] = []
        self.last_end = 0.0  # when the latest timed call finished
        self.error: BaseException | None = None

    def issue(self, inputs: tuple[Any, ...], timed: bool) -> None:
        self._slots.acquire()  # blocks while `concurrency` calls are in flight
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        start = self._clock()

        def done(outputs: Any, error: BaseException | None) -> None:
            end = self._clock()
            with self._lock:
                self._in_flight -= 1
                if timed:
                    self.spans.append((start, end))
                    self.last_end = max(self.last_end, end)
                if error is not None and self.error is None:
                    self.error = error
            self._slots.release()

        try:
            self._runner.submit(inputs, done)
        except BaseException as exc:  # the runner refused the call: nothing is in flight
            done(None, exc)

    def finished(self) -> tuple[list[float], float]:
        """The latencies of the timed calls finished so far, and when the latest ended."""
        with self._lock:
            return [end - begin for begin, end in self.spans], self.last_end

    def drain(self) -> None:
        self._runner.drain()
        if self.error is not None:
            raise RuntimeError(f"a request failed while measuring load: {self.error}") from (
                self.error
            )


def _warm_up(
    flight: _InFlight, inputs: tuple[Any, ...], settings: MeasureSettings, clock: Clock
) -> None:
    end = clock() + settings.warmup_s
    for index in range(max(settings.warmup_calls, 1)):
        flight.issue(inputs, timed=False)
        if flight.error is not None:
            break
        if index + 1 >= settings.warmup_calls and clock() >= end:
            break
    flight.drain()


def _timed_window(
    flight: _InFlight,
    inputs: tuple[Any, ...],
    settings: MeasureSettings,
    clock: Clock,
    should_stop: StopRule | None,
    batch_size: int,
) -> float:
    """Issue timed calls until the settings are met (or ``should_stop`` says so); return the
    window's start."""
    start = clock()
    issued = 0
    while flight.error is None:
        flight.issue(inputs, timed=True)
        issued += 1
        elapsed = clock() - start
        if issued >= settings.min_calls and elapsed >= settings.min_duration_s:
            break
        if elapsed >= settings.max_duration_s:
            break
        if should_stop is not None:
            latencies, last_end = flight.finished()
            if latencies and should_stop(latencies, batch_size, last_end - start):
                break
    flight.drain()
    return start


def _cores_available() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 0


def measure_load(
    runner: Runner,
    inputs: tuple[Any, ...],
    point: LoadPoint,
    settings: MeasureSettings | None = None,
    percentile: float = 99.0,
    memory: MemoryWatch | None = None,
    clock: Clock = time.perf_counter,
    should_stop: StopRule | None = None,
) -> ThroughputStats:
    """Measure ``point`` on ``runner`` (made for ``point.concurrency``) with ``inputs``, one
    call's inputs holding ``point.batch_size`` requests (``tile_batch``), timed as
    ``settings`` say (default :class:`MeasureSettings`).

    ``memory``: a watch the caller started (before the build, for the candidate's whole
    footprint); without one, the peak covers this measurement only. ``clock`` replaces the
    monotonic clock in tests. ``should_stop(finished calls' latencies, batch size, seconds)``
    may end the window early (pruning, a tail clearly over a budget): the figures are then
    those of the calls made so far.
    Raises RuntimeError when a call fails.
    """
    tail = check_percentile(percentile)
    settings = settings or MeasureSettings()
    watch = memory if memory is not None else MemoryWatch().start()
    flight = _InFlight(runner, point.concurrency, clock)
    _warm_up(flight, inputs, settings, clock)
    load = LoadWatch().start()
    cpu_start = time.process_time()
    start = _timed_window(flight, inputs, settings, clock, should_stop, point.batch_size)
    cpu_s = time.process_time() - cpu_start
    seen = load.stop()
    end = max(span_end for _, span_end in flight.spans)
    duration = max(end - start, 1e-9)
    calls = np.array([e - s for s, e in flight.spans])
    requests = len(calls) * point.batch_size
    throughput = requests / duration
    latencies = request_latencies(calls, point.batch_size, throughput)
    p50, p90, p99, at_tail = np.percentile(latencies, [50, 90, 99, tail])
    return ThroughputStats(
        point=point,
        requests=requests,
        calls=len(calls),
        duration_s=duration,
        throughput=throughput,
        mean_s=float(latencies.mean()),
        p50_s=float(p50),
        p90_s=float(p90),
        p99_s=float(p99),
        percentile=tail,
        tail_s=float(at_tail),
        call_p50_s=float(np.median(calls)),
        max_in_flight=flight.max_in_flight,
        overlap=runner.overlap,
        memory=watch.stop(),
        cores_used=round(cpu_s / duration, 3),
        cores_available=_cores_available(),
        load=tuple(seen.items()),
        std_s=float(latencies.std()),
        min_s=float(latencies.min()),
    )
