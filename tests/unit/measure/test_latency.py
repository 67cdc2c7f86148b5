import time

import pytest

from speedster_dist.measure import MeasureSettings, latency_stats, measure_latency


def _spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_known_latency_is_measured():
    stats = measure_latency(
        lambda: _spin(0.002),
        MeasureSettings(warmup_calls=2, warmup_s=0, min_calls=20, min_duration_s=0.05),
    )
    assert stats.count >= 20
    # A wall-clock spin never returns early; other processes on the machine may delay it,
    # so only the lower bound is asserted (the stopping rules are checked on a virtual clock).
    assert stats.p50 >= 0.002
    assert stats.min <= stats.p50 <= stats.p90 <= stats.p99
    assert stats.total_s >= 0.04


class _TickingCall:
    """A call that takes exactly ``seconds`` of a virtual clock (no wall-clock timing)."""

    def __init__(self, seconds: float) -> None:
        self.now = 0.0
        self.seconds = seconds
        self.calls = 0

    def clock(self) -> float:
        return self.now

    def __call__(self) -> None:
        self.calls += 1
        self.now += self.seconds


def test_runs_until_both_minimum_count_and_duration():
    call = _TickingCall(0.001)
    settings = MeasureSettings(warmup_calls=0, warmup_s=0, min_calls=5, min_duration_s=0.1)
    stats = measure_latency(call, settings, clock=call.clock)
    # The duration bound dominates: 100 calls of 1 ms, not the 5 the count asks for.
    assert stats.count == pytest.approx(100, abs=1)
    assert stats.total_s == pytest.approx(0.1, abs=0.0011)
    assert stats.p50 == pytest.approx(0.001)


def test_count_bound_dominates_for_slow_calls():
    call = _TickingCall(0.05)
    settings = MeasureSettings(warmup_calls=0, warmup_s=0, min_calls=8, min_duration_s=0.1)
    stats = measure_latency(call, settings, clock=call.clock)
    assert stats.count == 8  # 0.1 s passed after 2 calls; the count asks for 8


def test_max_duration_caps_slow_calls():
    call = _TickingCall(0.01)
    settings = MeasureSettings(
        warmup_calls=0, warmup_s=0, min_calls=1000, min_duration_s=0.05, max_duration_s=0.1
    )
    stats = measure_latency(call, settings, clock=call.clock)
    assert stats.count == pytest.approx(10, abs=1)  # capped at 0.1 s of 10 ms calls


def test_warmup_calls_are_not_timed():
    call = _TickingCall(0.001)

    def slow_first_call() -> None:
        call()
        if call.calls == 1:
            call.now += 0.05  # a slow first call, as compilers do

    stats = measure_latency(
        slow_first_call,
        MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=10, min_duration_s=0),
        clock=call.clock,
    )
    assert stats.count == 10
    assert stats.p99 == pytest.approx(0.001)  # the 51 ms warm-up call is not among them
    assert stats.total_s == pytest.approx(0.01)


def test_step_callback_can_stop_early():
    steps = []

    def on_step(samples):
        steps.append(len(samples))
        return True

    call = _TickingCall(0.001)
    settings = MeasureSettings(warmup_calls=0, warmup_s=0, min_calls=10_000, min_duration_s=1.0)
    stats = measure_latency(call, settings, on_step=on_step, clock=call.clock)
    assert steps == [100]  # the first step comes after a tenth of the minimum duration
    assert stats.count == 100


def test_synchronize_runs_around_each_call():
    syncs = []
    settings = MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=4, min_duration_s=0)
    measure_latency(lambda: None, settings, synchronize=lambda: syncs.append(1))
    assert len(syncs) == 1 + 4  # once after warm-up, once per timed call


def test_stats_values():
    stats = latency_stats([0.001, 0.002, 0.003, 0.004])
    assert stats.mean == pytest.approx(0.0025)
    assert stats.p50 == pytest.approx(0.0025)
    assert stats.std == pytest.approx(0.0011180, rel=1e-3)
    assert stats.min == 0.001


def test_invalid_settings_rejected():
    with pytest.raises(ValueError):
        MeasureSettings(min_calls=0)
    with pytest.raises(ValueError):
        MeasureSettings(min_duration_s=5, max_duration_s=1)
