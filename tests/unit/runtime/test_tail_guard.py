"""The latency-budget guard of a load point, against arithmetic: when the requests finished
so far already put the point over its budget, and what it says then."""

from __future__ import annotations

import pytest

from speedster_dist.measure import MeasureSettings, measure_load
from speedster_dist.runtime._load_trial import (
    TAIL_MIN_CALLS,
    TAIL_MIN_REQUESTS,
    LoadPruner,
    TailGuard,
)
from speedster_dist.serving import LoadPoint
from speedster_dist.testing.fakes import SimulatedRunner, VirtualClock


def test_no_budget_never_stops():
    assert not TailGuard(None).should_stop([10.0] * 50, 1, 500.0)


def test_waits_for_enough_calls_and_requests():
    guard = TailGuard(0.2)
    # Batch 1: eight requests are needed, however slow the first seven were.
    assert not guard.should_stop([1.0] * (TAIL_MIN_REQUESTS - 1), 1, 7.0)
    assert guard.should_stop([1.0] * TAIL_MIN_REQUESTS, 1, 8.0)
    # Batch 32: the requests are there after one call, the calls after TAIL_MIN_CALLS.
    assert not TailGuard(0.2).should_stop([1.0] * (TAIL_MIN_CALLS - 1), 32, 2.0)
    assert TailGuard(0.2).should_stop([1.0] * TAIL_MIN_CALLS, 32, 3.0)


def test_judges_the_median_request_with_its_wait_for_the_batch():
    # Calls of 100 ms serving 8 requests, one at a time: 80 requests/s; the requests wait
    # 7/80 .. 0 s for their batch, so the median request takes 0.1 + 3.5/80 = 143.75 ms.
    calls = [0.1] * 4
    assert not TailGuard(0.15).should_stop(calls, 8, 0.4)
    guard = TailGuard(0.14)
    assert guard.should_stop(calls, 8, 0.4)
    assert guard.level_s == pytest.approx(0.14375)
    assert guard.reason == (
        "stopped after 4 calls: their median per-request latency 143.8 ms is over the "
        "latency budget of 140 ms"
    )


def test_one_slow_call_among_fast_ones_does_not_stop_it():
    # The p99 may end over the budget, but that is for the whole window to say.
    assert not TailGuard(0.2).should_stop([0.03] * 7 + [5.0], 1, 5.21)


def test_a_low_percentile_budget_is_judged_at_that_percentile():
    calls = [0.1] * 9 + [0.3] * 11  # the median is 300 ms, the 10th percentile 100 ms
    assert TailGuard(0.2, percentile=99).should_stop(calls, 1, 4.2)
    guard = TailGuard(0.2, percentile=10)
    assert not guard.should_stop(calls, 1, 4.2)


def test_the_guard_ends_a_measurement_early():
    clock = VirtualClock()
    runner = SimulatedRunner(clock, 0.5, 1)
    settings = MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=40, min_duration_s=0)
    guard = TailGuard(0.2)
    stats = measure_load(
        runner, (), LoadPoint(1, 1), settings, clock=clock, should_stop=guard.should_stop
    )
    assert guard.stopped and guard.calls == TAIL_MIN_REQUESTS
    # The call issued when it stopped finishes too (drained): one more than judged.
    assert stats.calls <= TAIL_MIN_REQUESTS + 1 < 40
    assert stats.p99_s == pytest.approx(0.5)


def test_the_pruner_counts_the_finished_calls():
    pruner = LoadPruner(bar_s=0.01)
    assert not pruner.should_stop([0.1] * 7, 1, 0.7)
    assert pruner.should_stop([0.1] * 8, 1, 0.8) and pruner.rate == pytest.approx(10.0)
