"""The objective and its constraints as settings: parsed once, checked against each other,
and refused before any trial when wrong (docs/bad-inputs.md has the one-keyword rows)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from speedster_dist import optimize_model
from speedster_dist.errors import InputError
from speedster_dist.options import parse_run_options
from speedster_dist.runtime import InlineExecutor
from speedster_dist.serving import Objective
from speedster_dist.testing.models import tiny_mlp


def test_the_default_is_speedsters_latency_objective():
    options = parse_run_options()
    assert options.serving_objective == Objective()
    assert "objective" not in options.history_settings()  # latency runs record what they did


def test_a_throughput_objective_with_its_constraints():
    options = parse_run_options(
        extras={
            "objective": "throughput",
            "batch_sizes": [32, 1, 8],
            "concurrency": 2,  # one number: a list of one
            "latency_budget_ms": 200,
            "latency_percentile": 95,
            "max_memory_mb": 512,
        }
    )
    assert options.serving_objective == Objective(
        "throughput", (1, 8, 32), (2,), 200.0, 95.0, 512.0
    )
    settings = options.history_settings()
    assert settings["objective"] == "throughput" and settings["latency_budget_ms"] == 200.0


def test_the_objective_changes_the_study_but_latency_keeps_its_name():
    plain = parse_run_options()._identity()
    throughput = parse_run_options(extras={"objective": "throughput"})._identity()
    assert "objective" not in plain
    assert throughput["objective"] == "throughput" and throughput["batch_sizes"] == [1, 8, 32]


def test_cost_takes_prices():
    options = parse_run_options(extras={"objective": "cost", "prices": {"cpu-a": 1.0}})
    assert options.serving_objective.kind == "cost"


@pytest.mark.parametrize(
    ("extras", "message"),
    [
        ({"objective": "cost"}, "objective='cost' needs prices"),
        ({"batch_sizes": [1, 8]}, "batch_sizes and concurrency are load points"),
        ({"objective": "throughput", "batch_sizes": []}, "batch_sizes is empty"),
        ({"objective": "throughput", "concurrency": [0]}, "concurrency must hold whole numbers"),
        ({"objective": "throughput", "batch_sizes": "8"}, "batch_sizes must be a list"),
        ({"latency_budget_ms": float("nan")}, "latency_budget_ms must be None or a number > 0"),
        ({"max_memory_mb": 0}, "max_memory_mb must be None or a number > 0"),
        ({"latency_percentile": 101}, "latency_percentile must be in (0, 100]"),
        ({"latency_percentile": 95}, "latency_percentile must be 50, 90 or 99"),
    ],
)
def test_contradictions_and_bad_values_are_refused(extras, message):
    with pytest.raises(InputError) as info:
        parse_run_options(extras=extras)
    assert message in str(info.value)


class _Spy(InlineExecutor):
    def discover(self) -> Any:
        raise AssertionError("a trial was about to be scheduled for bad input")


def test_a_batch_the_samples_cannot_be_tiled_to_is_refused_before_any_trial():
    # Samples of two lengths: a batch of 8 requests cannot be concatenated.
    data = [((torch.randn(1, 16 if i % 2 else 8),), 0) for i in range(10)]

    class Pooled(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=1, keepdim=True)

    with pytest.raises(InputError, match="batch_sizes: a batch of 8 requests: input"):
        optimize_model(
            Pooled(),
            data,
            executor=_Spy(),
            progress=False,
            objective="throughput",
            batch_sizes=[1, 8],
        )


def test_samples_that_tile_pass_the_check_and_reach_the_search():
    data = [((torch.randn(1, 16),), 0) for _ in range(5)]
    with pytest.raises(AssertionError, match="about to be scheduled"):
        optimize_model(tiny_mlp(), data, executor=_Spy(), progress=False, objective="throughput")
