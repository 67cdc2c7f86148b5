"""The records every layer shares: frozen, and the outcome's questions answered from its rows."""

from __future__ import annotations

import dataclasses

import pytest

from speedster_dist.records import (
    Candidate,
    LatencyStats,
    SearchOutcome,
    TrialResult,
    TrialStatus,
)

KEY = "cpu-test-2c"


def _result(backend: str, p50: float, baseline: bool = False, key: str = KEY) -> TrialResult:
    latency = LatencyStats(10, p50, 0.0, p50, p50, p50, p50, 10 * p50)
    candidate = Candidate.make(backend, "fp32", key)
    return TrialResult(candidate, TrialStatus.COMPLETE, latency=latency, is_baseline=baseline)


def test_a_search_outcome_cannot_be_reassigned():
    outcome = SearchOutcome(wall_s=3.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.wall_s = 1.0  # type: ignore[misc]
    assert dataclasses.replace(outcome, wall_s=1.0).wall_s == 1.0 and outcome.wall_s == 3.0


def test_the_baseline_is_the_baseline_trial_of_that_hardware_type():
    base, other_base = _result("torch", 0.004, True), _result("torch", 0.002, True, "gpu-x")
    outcome = SearchOutcome(results=[_result("fast", 0.001), base, other_base])
    assert outcome.baseline(KEY) is base and outcome.baseline("gpu-x") is other_base
    assert outcome.baseline("cpu-missing") is None
