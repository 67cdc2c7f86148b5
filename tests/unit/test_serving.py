"""The serving records: load points refuse bad values, measurements pickle and say when they
were noisy."""

from __future__ import annotations

import math
import pickle

import pytest

from speedster_dist.serving import (
    NOISY_OTHERS_SHARE,
    LoadPoint,
    MemoryUsage,
    Overlap,
    Runner,
    ThroughputStats,
)
from speedster_dist.testing.fakes import SimulatedRunner, VirtualClock


def _stats(**changes: object) -> ThroughputStats:
    fields: dict[str, object] = dict(
        point=LoadPoint.make(8, 2, {"num_threads": 1}),
        requests=64,
        calls=8,
        duration_s=0.5,
        throughput=128.0,
        mean_s=0.02,
        p50_s=0.02,
        p90_s=0.03,
        p99_s=0.04,
        percentile=95.0,
        tail_s=0.035,
        call_p50_s=0.015,
        max_in_flight=2,
        overlap=Overlap("threads", True, "releases the GIL"),
        memory=MemoryUsage(300.0, 200.0, None, "VmHWM"),
        cores_used=1.5,
        cores_available=2,
        load=(("loadavg_before", 1.0), ("others_cpu_share", 0.1)),
    )
    fields.update(changes)
    return ThroughputStats(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("batch", "concurrency", "wrong"),
    [
        (0, 1, "batch_size"),
        (-3, 1, "batch_size"),
        (math.nan, 1, "batch_size"),
        (2.0, 1, "batch_size"),
        (True, 1, "batch_size"),
        (1, 0, "concurrency"),
        (1, math.nan, "concurrency"),
    ],
)
def test_bad_points_are_refused_naming_the_value(batch, concurrency, wrong):
    with pytest.raises(ValueError, match=f"{wrong}.*whole number >= 1, got"):
        LoadPoint(batch, concurrency)


def test_a_nan_knob_is_refused():
    with pytest.raises(ValueError, match="knob 'num_streams' must be finite"):
        LoadPoint.make(1, 1, {"num_streams": math.nan})


def test_a_point_freezes_its_knobs_sorted_and_labels_itself():
    point = LoadPoint.make(8, 2, {"b": 1, "a": "x"})
    assert point.knobs == (("a", "x"), ("b", 1))
    assert point == LoadPoint(8, 2, (("b", 1), ("a", "x")))  # pairs are sorted too
    assert point.label == "batch 8 x 2 in flight a=x b=1"
    assert hash(point) == hash(LoadPoint(8, 2, (("a", "x"), ("b", 1))))


def test_stats_pickle_and_keep_every_field():
    stats = _stats()
    assert pickle.loads(pickle.dumps(stats)) == stats
    assert stats.memory.rss_delta_mb == 100.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"p99_s": math.nan}, "p99_s must be a finite number"),
        ({"throughput": 0.0}, "positive window and rate"),
        ({"percentile": 0.0}, r"percentile must be in \(0, 100\]"),
        ({"requests": 0}, "requests must be a whole number"),
    ],
)
def test_stats_refuse_impossible_values(changes, message):
    with pytest.raises(ValueError, match=message):
        _stats(**changes)


def test_noisy_when_other_processes_took_a_quarter_of_the_machine():
    share = NOISY_OTHERS_SHARE
    assert not _stats(load=(("others_cpu_share", share),)).noisy
    assert _stats(load=(("others_cpu_share", share + 0.01),)).noisy
    # Without /proc/stat: the load average against the CPUs this process may use.
    assert _stats(load=(("loadavg_before", 3.0),), cores_available=2).noisy
    assert not _stats(load=(("loadavg_after", 1.5),), cores_available=2).noisy


def test_memory_delta_is_never_negative_and_infinity_is_refused():
    assert MemoryUsage(100.0, 120.0).rss_delta_mb == 0.0
    with pytest.raises(ValueError, match="peak_rss_mb must be a finite number"):
        MemoryUsage(math.inf, 1.0)
    with pytest.raises(ValueError, match="peak_device_mb"):
        MemoryUsage(1.0, 1.0, -2.0)


def test_the_simulated_runner_satisfies_the_runner_protocol():
    assert isinstance(SimulatedRunner(VirtualClock(), 0.01, 1), Runner)
    with pytest.raises(ValueError, match="mechanism"):
        Overlap("", True)
