"""The trial runner under a load objective: a load point measured through the backend's
runner, memory watched from before the build, infeasible and pruned points, and a candidate
built for fixed shapes built again for its batch (fake_serving: sleeping calls)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from speedster_dist.measure import MeasureSettings
from speedster_dist.records import Candidate, TrialStatus
from speedster_dist.runtime import PRUNE_MIN_CALLS, run_trial
from speedster_dist.runtime._load_trial import TAIL_MIN_REQUESTS
from speedster_dist.serving import Objective
from speedster_dist.testing.fakes import SERVING_BACKENDS
from speedster_dist.testing.registry import use_backends

THROUGHPUT = Objective("throughput", (1, 4), (1, 2))


@pytest.fixture(autouse=True)
def serving_fake(monkeypatch):
    use_backends(monkeypatch, SERVING_BACKENDS)


def point(load, technique=""):
    return Candidate.make("fake_serving", "fp32", "cpu-test", technique, {"slowdown": 1}, load)


def uniform(payload):
    """Held-out samples of one shape (a fixed-shape build takes them all)."""
    module = payload.source.module
    samples = [(torch.randn(1, 16),) for _ in range(3)]
    with torch.inference_mode():
        reference = [tuple(module(*s)) for s in samples]
    return replace(payload, validation=samples, reference_outputs=reference)


def test_a_load_point_is_measured_through_the_runner_with_its_memory(payload):
    result, saved = run_trial(replace(payload, objective=THROUGHPUT), point((4, 2)))
    assert result.status is TrialStatus.COMPLETE and saved is not None
    stats, latency = result.throughput, result.latency
    assert stats is not None and latency is not None
    assert (stats.point.batch_size, stats.point.concurrency) == (4, 2)
    assert stats.point.knobs == (("slowdown", 1),)
    assert stats.requests == 4 * stats.calls and stats.max_in_flight <= 2
    assert latency.count == stats.requests and latency.p99 == stats.p99_s
    assert result.memory is stats.memory and result.memory.peak_rss_mb > 0
    assert dict(result.extra)["others_cpu_share"] >= 0  # the machine load, for the history


def test_a_latency_trial_records_its_memory_too(payload):
    result, _ = run_trial(payload, point(None))
    assert result.ok and result.throughput is None
    assert result.memory is not None and result.memory.peak_rss_mb >= result.memory.baseline_rss_mb


def test_a_point_over_the_budget_is_infeasible_with_its_figures(payload):
    tight = replace(THROUGHPUT, latency_budget_ms=0.001)  # no call takes a microsecond
    result, saved = run_trial(replace(payload, objective=tight), point((1, 1)))
    assert result.status is TrialStatus.INFEASIBLE and saved is None
    assert "over the latency budget of 0.001 ms" in result.reason
    assert result.throughput is not None and result.latency is not None


def test_a_latency_budget_applies_to_the_latency_objective(payload):
    tight = Objective(latency_budget_ms=0.001, percentile=90)
    result, _ = run_trial(replace(payload, objective=tight), point(None))
    assert result.status is TrialStatus.INFEASIBLE and result.latency is not None
    assert result.reason.startswith(f"p90 {result.latency.p90 * 1e3:.4g} ms")


def test_a_point_that_cannot_reach_the_bar_is_pruned(payload):
    longer = MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=32, min_duration_s=0.02)
    slow = replace(payload, objective=THROUGHPUT, measure=longer)
    # A bar of a nanosecond per request: nothing that sleeps reaches it.
    result, saved = run_trial(slow, point((1, 1)), prune_above_s=1e-9)
    assert result.status is TrialStatus.PRUNED and saved is None
    assert result.throughput is not None
    assert PRUNE_MIN_CALLS <= result.throughput.calls < 32  # stopped before the settings' count
    assert "requests/s after" in result.reason


def test_a_fixed_shape_build_is_built_again_for_its_batch(payload):
    fixed = replace(uniform(payload), objective=THROUGHPUT)
    result, saved = run_trial(fixed, point((4, 2), "fixed"))
    assert result.status is TrialStatus.COMPLETE, result.reason
    assert dict(result.fixed_shapes) == {"input": (4, 16)}  # what is saved and served
    assert saved is not None
    # At the samples' own shape no second build is needed.
    single, _ = run_trial(fixed, point((1, 1), "fixed"))
    assert dict(single.fixed_shapes) == {"input": (1, 16)}


def test_a_point_clearly_over_the_budget_stops_early_as_infeasible(payload):
    # A call takes at least 4 ms here, far over a budget of a microsecond: the point stops
    # once TAIL_MIN_REQUESTS requests are in, long before the settings' 64 calls.
    longer = MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=64, min_duration_s=0.0)
    tight = replace(THROUGHPUT, latency_budget_ms=0.001)
    result, saved = run_trial(replace(payload, objective=tight, measure=longer), point((1, 1)))
    assert result.status is TrialStatus.INFEASIBLE and saved is None  # not FAILED, not PRUNED
    stats = result.throughput
    assert stats is not None and result.latency is not None
    assert TAIL_MIN_REQUESTS <= stats.calls < 64
    assert "over the latency budget of 0.001 ms" in result.reason
    assert "stopped after" in result.reason and "median per-request latency" in result.reason


def test_a_point_within_the_budget_runs_its_whole_window(payload):
    settings = MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=12, min_duration_s=0.0)
    roomy = replace(THROUGHPUT, latency_budget_ms=60_000.0)
    result, _ = run_trial(replace(payload, objective=roomy, measure=settings), point((4, 1)))
    assert result.status is TrialStatus.COMPLETE and result.throughput is not None
    assert result.throughput.calls >= 12
