"""A short budget reaches the best backend when the history (or the prior) puts it first.

The fakes sleep to build and to run, so the budget arithmetic does not depend on how fast or
how busy this machine is: a slower machine only makes the cold search reach less.
"""

from __future__ import annotations

import pytest
import torch

from speedster_dist import optimize_model
from speedster_dist.backends import get_backend
from speedster_dist.measure import MeasureSettings
from speedster_dist.records import DeviceKind, HardwareType, Precision, TrialStatus
from speedster_dist.results import HistoryTarget, read_history
from speedster_dist.runtime import InlineExecutor, NodeProbe, backend_catalog
from speedster_dist.testing.fakes import Behaviour, FakeBackend
from speedster_dist.testing.models import tiny_mlp
from speedster_dist.testing.registry import backend_spec, use_backends

# Three slow-to-build backends ahead of the planted best in the catalog (declaration order).
BUILD_S = 2.0
SLOW_A = FakeBackend("slow_a", {(Precision.FP32, ""): Behaviour(0.004, build_s=BUILD_S)})
SLOW_B = FakeBackend("slow_b", {(Precision.FP32, ""): Behaviour(0.004, build_s=BUILD_S)})
SLOW_C = FakeBackend("slow_c", {(Precision.FP32, ""): Behaviour(0.004, build_s=BUILD_S)})
PLANTED = FakeBackend("planted", {(Precision.FP32, ""): Behaviour(0.0005, build_s=BUILD_S)})
# The eager baseline, 8 ms a call: every fake beats it.
SLOW_EAGER = FakeBackend("torch", {(Precision.FP32, ""): Behaviour(0.008)})
NAMES = ("torch", "slow_a", "slow_b", "slow_c", "planted")
MODULE = __name__
HW = HardwareType("cpu-sim-avx512vnni-2c", DeviceKind.CPU, "simulated", frozenset({"avx2"}), 2)
QUICK = MeasureSettings(
    warmup_calls=1, warmup_s=0, min_calls=5, min_duration_s=0.0, load_check=False
)
BUDGET_S = 5.0  # the baseline and one slow build fit; the baseline and three do not


def _executor(monkeypatch):
    monkeypatch.setattr(get_backend("torch"), "build", SLOW_EAGER.build)
    use_backends(monkeypatch, backend_spec({n: f"{MODULE}:{n.upper()}" for n in NAMES[1:]}))
    by_name = {i.name: i for i in backend_catalog(DeviceKind.CPU)}
    catalog = tuple(by_name[n] for n in NAMES)
    return InlineExecutor(NodeProbe("node-1", (HW,), ((HW.key, catalog),)))


def _search(monkeypatch, tmp_path, history, seconds):
    torch.manual_seed(0)
    data = [((torch.randn(1, 16),), torch.tensor([0])) for _ in range(3)]
    return optimize_model(
        tiny_mlp(),
        data,
        optimization_time=seconds,
        executor=_executor(monkeypatch),
        measure_settings=QUICK,
        progress=False,
        device="cpu",
        study_storage=tmp_path / "studies",
        history=history,
        confirm_rounds=0,
    )


def _measured(learner):
    return {r.candidate.backend for r in learner.results if r.status is TrialStatus.COMPLETE}


@pytest.mark.slow  # its fakes sleep through a 5 s budget
def test_a_cold_short_search_misses_the_planted_best(monkeypatch, tmp_path):
    learner = _search(monkeypatch, tmp_path, None, BUDGET_S)
    assert "planted" not in _measured(learner)
    assert "slow_a" in _measured(learner)


@pytest.mark.slow  # a full search, then a 5 s one
def test_the_history_puts_the_planted_best_first(monkeypatch, tmp_path):
    history = HistoryTarget(tmp_path / "history", model_name="mlp")
    # A full search once (no budget limit to speak of) teaches the history the winner...
    full = _search(monkeypatch, tmp_path, history, 120)
    assert full.entries[HW.key].backend == "planted"
    # ...so the next short search measures it right after the baseline, and keeps it.
    short = _search(monkeypatch, tmp_path, history, BUDGET_S)
    order = [r.candidate.backend for r in short.results]
    assert order[:2] == ["torch", "planted"]
    assert short.entries[HW.key].backend == "planted"
    runs = set(read_history(tmp_path / "history").column("run_id").to_pylist())
    assert len(runs) == 2
