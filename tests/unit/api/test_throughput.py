"""optimize_model with a throughput objective, in this process (fake_serving: sleeping calls
of known cost, torch the baseline): the winner is the feasible point that served the most,
its operating point is the learner's, saved and served by run_many."""

from __future__ import annotations

import pytest
import torch

from speedster_dist import load_model
from speedster_dist.records import TrialStatus
from speedster_dist.runtime import InlineExecutor
from speedster_dist.testing.fakes import SERVING_BACKENDS
from speedster_dist.testing.models import tiny_mlp
from speedster_dist.testing.registry import use_backends

from .helpers import TINY, optimize

DATA = [((torch.randn(1, 16),), 0) for _ in range(10)]
BUDGET_MS = 60.0


@pytest.fixture(autouse=True)
def serving_fake(monkeypatch):
    use_backends(monkeypatch, SERVING_BACKENDS)


@pytest.fixture(scope="module")
def searched():
    # Module-scoped: the fixture above does not apply yet, so register the fake here too.
    patch = pytest.MonkeyPatch()
    use_backends(patch, SERVING_BACKENDS)
    try:
        return optimize(
            tiny_mlp(),
            DATA,
            InlineExecutor(),
            searcher="exhaustive",
            objective="throughput",
            batch_sizes=[1, 4],
            concurrency=[1, 2],
            latency_budget_ms=BUDGET_MS,
            optimization_time=300,
            measure_settings=TINY,
        )
    finally:
        patch.undo()


def test_the_winner_is_the_feasible_point_that_served_the_most(searched):
    learner = searched
    (key,) = learner.hardware_types()
    measured = [r for r in learner.results if r.candidate.hardware_key == key]
    complete = [r for r in measured if r.status is TrialStatus.COMPLETE]
    assert {r.candidate.backend for r in complete} >= {"torch", "fake_serving"}
    best = max(complete, key=lambda r: r.throughput.throughput)
    point = learner.operating_point(key)
    assert (point["batch_size"], point["concurrency"]) == (
        best.candidate.batch_size,
        best.candidate.concurrency,
    )
    assert point["throughput"] == pytest.approx(best.throughput.throughput)
    assert point["p99_ms"] == pytest.approx(best.throughput.p99_s * 1e3)
    assert point["objective"] == "throughput" and point["latency_budget_ms"] == BUDGET_MS
    assert point["knobs"] == best.candidate.knob_dict


def test_every_measured_point_is_judged_by_its_own_figures(searched):
    for result in searched.results:
        if result.status in (TrialStatus.COMPLETE, TrialStatus.INFEASIBLE):
            assert result.memory is not None and result.throughput is not None
            over = result.throughput.tail_s * 1e3 > BUDGET_MS
            assert over is (result.status is TrialStatus.INFEASIBLE), result.candidate.label


def test_the_saved_learner_serves_its_point(searched, tmp_path):
    path = searched.save(tmp_path / "learner")
    loaded = load_model(path, trust_code=True)
    assert loaded.operating_point() == searched.operating_point()
    requests = [sample for (sample, _) in DATA]
    served = loaded.run_many(requests)
    for request, outputs in zip(requests, served, strict=True):
        torch.testing.assert_close(outputs, loaded(*request))


def test_a_latency_search_records_memory_and_serves_one_call_at_a_time():
    learner = optimize(tiny_mlp(), DATA, InlineExecutor(), searcher="exhaustive")
    complete = [r for r in learner.results if r.ok]
    assert complete and all(r.memory is not None and r.throughput is None for r in complete)
    point = learner.operating_point(learner.hardware_types()[0])
    assert (point["batch_size"], point["concurrency"], point["objective"]) == (1, 1, "latency")
