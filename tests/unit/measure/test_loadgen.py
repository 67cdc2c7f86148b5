"""Load generation against arithmetic: a simulated runner on a virtual clock serves every
call in exactly ``latency_s``, so throughput and per-request latency (with the wait for the
batch to fill) are known to the last digit. No real timing is asserted."""

from __future__ import annotations

import math

import pytest
import torch

from speedster_dist.backends import BuildConfig, runner_for
from speedster_dist.backends._torch_common import CPU_THREADS
from speedster_dist.measure import MeasureSettings, measure_load, request_latencies, tile_batch
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.serving import LoadPoint
from speedster_dist.testing.backend_contract import contract_model
from speedster_dist.testing.fakes import BACKEND, SimulatedRunner, VirtualClock


def _settings(min_calls: int, min_s: float = 0.0, max_s: float = 30.0) -> MeasureSettings:
    return MeasureSettings(
        warmup_calls=2,
        warmup_s=0.0,
        min_calls=min_calls,
        min_duration_s=min_s,
        max_duration_s=max_s,
    )


def _measure(latency: float, point: LoadPoint, settings: MeasureSettings, **kw):
    clock = VirtualClock()
    runner = SimulatedRunner(clock, latency, point.concurrency, kw.pop("fail_at", -1))
    return measure_load(runner, (), point, settings, clock=clock, **kw), runner


def test_two_lanes_of_batches_of_four():
    # 8 timed calls of 10 ms, two at a time: 4 rounds, 40 ms, 32 requests -> 800 requests/s.
    stats, _ = _measure(0.01, LoadPoint(4, 2), _settings(8), percentile=100)
    assert (stats.calls, stats.requests, stats.max_in_flight) == (8, 32, 2)
    assert stats.duration_s == pytest.approx(0.04)
    assert stats.throughput == pytest.approx(800.0)
    # A batch fills in 4/800 s: its requests wait 3, 2, 1 and 0 x 1.25 ms, then 10 ms.
    assert stats.call_p50_s == pytest.approx(0.01)
    assert stats.mean_s == pytest.approx(0.01 + 1.5 * 0.00125)
    assert stats.p50_s == pytest.approx(0.01 + 1.5 * 0.00125)  # between the 2nd and 3rd
    assert stats.tail_s == pytest.approx(0.01 + 3 * 0.00125)  # the first to arrive
    assert stats.p99_s == pytest.approx(0.01 + 3 * 0.00125)


def test_one_request_per_call_has_no_fill_wait():
    stats, _ = _measure(0.25, LoadPoint(1, 1), _settings(6))
    assert stats.throughput == pytest.approx(4.0)
    assert stats.p50_s == stats.p99_s == stats.mean_s == pytest.approx(0.25)


def test_concurrency_beyond_one_multiplies_throughput_at_the_same_call_latency():
    one, _ = _measure(0.25, LoadPoint(2, 1), _settings(8))
    four, _ = _measure(0.25, LoadPoint(2, 4), _settings(8))
    assert four.throughput == pytest.approx(4 * one.throughput)
    assert four.call_p50_s == one.call_p50_s
    # Batches fill four times faster at four times the rate: less waiting per request.
    assert four.p99_s < one.p99_s


def test_runs_until_both_the_minimum_count_and_duration():
    by_duration, _ = _measure(0.25, LoadPoint(1, 1), _settings(1, min_s=1.0))
    assert by_duration.calls == 4 and by_duration.duration_s == pytest.approx(1.0)
    by_count, _ = _measure(0.25, LoadPoint(1, 1), _settings(6, min_s=1.0))
    assert by_count.calls == 6


def test_stops_at_the_maximum_duration():
    capped, _ = _measure(0.25, LoadPoint(1, 1), _settings(100, min_s=0.0, max_s=1.0))
    assert capped.calls == 4


def test_warm_up_calls_are_not_timed():
    stats, runner = _measure(0.25, LoadPoint(1, 1), _settings(5))
    assert runner.submitted == 2 + 5 and stats.calls == 5


def test_request_latencies_add_each_requests_fill_wait():
    got = request_latencies([0.1, 0.2], batch_size=3, throughput=10.0)
    assert got.tolist() == pytest.approx([0.3, 0.2, 0.1, 0.4, 0.3, 0.2])


def test_a_failed_call_fails_the_measurement():
    with pytest.raises(RuntimeError, match=r"a request failed.*planted failure of call 4"):
        _measure(0.01, LoadPoint(1, 2), _settings(10), fail_at=4)


@pytest.mark.parametrize("percentile", [0, 101, math.nan, "99", True])
def test_a_bad_percentile_is_refused_before_any_call(percentile):
    clock = VirtualClock()
    runner = SimulatedRunner(clock, 0.01, 1)
    with pytest.raises(ValueError, match="latency percentile"):
        measure_load(runner, (), LoadPoint(1, 1), _settings(2), percentile=percentile)
    assert runner.submitted == 0


def test_the_percentile_is_configurable():
    stats, _ = _measure(0.01, LoadPoint(4, 1), _settings(4), percentile=50)
    assert stats.percentile == 50.0 and stats.tail_s == stats.p50_s


def test_a_real_fake_backend_through_its_thread_runner(tmp_path):
    """The sleeping fake (a torch candidate: threads, sleeps release the GIL): two calls in
    flight at once, memory and machine load recorded with the point."""
    model = contract_model("mlp")
    compiled = BACKEND.build(
        model.source, [], BuildConfig(Precision.FP32, DeviceKind.CPU), tmp_path
    )
    batch = tile_batch(model.validation, model.source.input_names, 3)
    runner = runner_for(compiled, 2)
    try:
        stats = measure_load(runner, batch, LoadPoint(3, 2), _settings(6))
    finally:
        runner.close()
    assert stats.overlap == CPU_THREADS and stats.max_in_flight == 2
    assert stats.requests == 3 * stats.calls and stats.calls >= 6
    assert stats.memory.peak_rss_mb > 0 and stats.memory.peak_rss_mb >= stats.memory.baseline_rss_mb
    assert stats.cores_available >= 1 and "loadavg_before" in dict(stats.load)
    assert torch.is_tensor(compiled(*batch)[0])
