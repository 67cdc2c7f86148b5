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
    # A wall-clock spin never returns early; other processes on the machine may delay it.
    assert 0.002 <= stats.p50 < 0.004
    assert stats.min <= stats.p50 <= stats.p90 <= stats.p99
    assert stats.total_s >= 0.04


def test_runs_until_both_minimum_count_and_duration():
    settings = MeasureSettings(warmup_calls=0, warmup_s=0, min_calls=5, min_duration_s=0.1)
    stats = measure_latency(lambda: _spin(0.001), settings)
    assert stats.total_s >= 0.09  # duration bound dominates: far more than 5 calls
    assert stats.count > 50


def test_max_duration_caps_slow_calls():
    settings = MeasureSettings(
        warmup_calls=0, warmup_s=0, min_calls=1000, min_duration_s=0.05, max_duration_s=0.1
    )
    started = time.perf_counter()
    stats = measure_latency(lambda: _spin(0.01), settings)
    assert time.perf_counter() - started < 0.3
    assert stats.count < 1000


def test_warmup_calls_are_not_timed():
    calls = []

    def call():
        calls.append(1)
        _spin(0.05 if len(calls) == 1 else 0.001)  # a slow first call, as compilers do

    stats = measure_latency(
        call, MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=10, min_duration_s=0)
    )
    assert stats.p99 < 0.02


def test_step_callback_can_stop_early():
    steps = []

    def on_step(samples):
        steps.append(len(samples))
        return True

    settings = MeasureSettings(warmup_calls=0, warmup_s=0, min_calls=10_000, min_duration_s=1.0)
    stats = measure_latency(lambda: _spin(0.001), settings, on_step=on_step)
    assert len(steps) == 1
    assert stats.count == steps[0] < 10_000


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
