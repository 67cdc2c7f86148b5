"""The objective record: defaults, refusals naming the value, constraint arithmetic, and the
Pareto front of measured points."""

from __future__ import annotations

import math
import pickle

import pytest

from speedster_dist.serving import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_CONCURRENCY,
    FrontierPoint,
    LoadPoint,
    MemoryUsage,
    Objective,
    pareto_front,
)


def test_latency_is_the_default_and_has_no_load_points():
    objective = Objective()
    assert objective.kind == "latency" and not objective.serves_load
    assert objective.loads == () and not objective.constrained
    assert objective.identity() == {}  # latency studies keep their names


def test_load_objectives_default_their_points_and_sort_them():
    assert Objective("throughput").batch_sizes == DEFAULT_BATCH_SIZES
    assert Objective("cost").concurrency == DEFAULT_CONCURRENCY
    objective = Objective("throughput", (32, 1, 8, 8), (2, 1))
    assert objective.batch_sizes == (1, 8, 32) and objective.concurrency == (1, 2)
    assert objective.loads == ((1, 1), (1, 2), (8, 1), (8, 2), (32, 1), (32, 2))
    assert objective.identity()["batch_sizes"] == [1, 8, 32]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "fastest"}, "objective must be one of"),
        ({"kind": "throughput", "batch_sizes": (0,)}, "each of batch_sizes must be a whole"),
        ({"kind": "throughput", "concurrency": (1.5,)}, "each of concurrency must be a whole"),
        ({"batch_sizes": (8,)}, "batch_sizes and concurrency are load points"),
        ({"latency_budget_ms": 0}, "latency_budget_ms must be a number > 0"),
        ({"latency_budget_ms": math.nan}, "latency_budget_ms must be a finite number"),
        ({"max_memory_mb": -5.0}, "max_memory_mb must be a finite number >= 0"),
        ({"kind": "throughput", "percentile": 0}, "latency_percentile must be in (0, 100]"),
        ({"percentile": 95}, "latency_percentile must be 50, 90 or 99"),
    ],
)
def test_bad_objectives_are_refused_naming_the_value(kwargs, message):
    with pytest.raises(ValueError) as info:
        Objective(**kwargs)
    assert message in str(info.value)


def test_a_load_objective_takes_any_percentile():
    assert Objective("throughput", percentile=95.0).percentile == 95.0


def test_violations_and_constraint_values():
    objective = Objective("throughput", latency_budget_ms=20.0, max_memory_mb=100.0)
    memory = MemoryUsage(peak_rss_mb=450.0, baseline_rss_mb=300.0)  # the candidate added 150
    assert objective.constraint_values(0.025, memory) == pytest.approx((5.0, 50.0))
    reasons = objective.violations(0.025, memory)
    assert reasons == (
        "p99 25 ms is over the latency budget of 20 ms",
        "memory 150 MB is over the cap of 100 MB",
    )
    assert objective.violations(0.015, MemoryUsage(350.0, 300.0)) == ()
    # Unknown memory never violates the cap; a constraint not set is met.
    assert objective.violations(0.015, None) == ()
    assert Objective("throughput").constraint_values(9.0, memory) == (0.0, 0.0)


def test_the_memory_cap_applies_to_device_memory_when_known():
    gpu = MemoryUsage(peak_rss_mb=900.0, baseline_rss_mb=100.0, peak_device_mb=40.0)
    assert gpu.candidate_mb == 40.0
    assert Objective(max_memory_mb=50.0).violations(0.001, gpu) == ()


def _point(label, tail_ms, throughput, feasible=True):
    return FrontierPoint(
        label, LoadPoint(1, 1), throughput, tail_ms / 1e3, tail_ms / 1e3, feasible=feasible
    )


def test_the_pareto_front_keeps_the_points_nothing_beats_on_both():
    points = [
        _point("a", 5, 100),
        _point("b", 10, 300),
        _point("c", 12, 250),  # slower and serves less than b
        _point("d", 30, 900, feasible=False),
        _point("e", 30, 800),  # as slow as d, serves less
        _point("f", 4, 50),
    ]
    front = pareto_front(points)
    assert [p.label for p in front] == ["f", "a", "b", "d"]
    assert pareto_front([]) == ()
    assert pickle.loads(pickle.dumps(front)) == front


def test_a_frontier_point_refuses_nan():
    with pytest.raises(ValueError, match="throughput"):
        _point("x", 1, math.nan)
