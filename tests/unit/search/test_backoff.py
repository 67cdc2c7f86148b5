"""Accuracy back-off (issue 20, item 11): a candidate rejected for its metric drop is tried
again keeping more layers in float, while each step helps, with both searchers and through
``optimize_model`` (a fake backend whose int8 error falls as ``fp_layers`` rises)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from speedster_dist import optimize_model
from speedster_dist.measure import MeasureSettings
from speedster_dist.records import (
    BackendInfo,
    Candidate,
    Capability,
    DeviceKind,
    HardwareType,
    Knob,
    LatencyStats,
    Precision,
    TrialResult,
    TrialStatus,
)
from speedster_dist.runtime import InlineExecutor
from speedster_dist.search import (
    MIN_PROGRESS,
    AccuracyBackoff,
    ExhaustiveSearcher,
    OptunaSearcher,
    SearchSpace,
    SpaceSettings,
    derive_space,
)
from speedster_dist.testing.fakes import FLOAT_LAYERS
from speedster_dist.testing.models import tiny_mlp
from speedster_dist.testing.registry import use_backends

HW = HardwareType("cpu-test-2c", DeviceKind.CPU, features=frozenset({"avx512_vnni"}))
CPU = frozenset({DeviceKind.CPU})
INT8 = frozenset({Precision.INT8})
LADDER = (0, 1, 2, 4, 8)


def _cap(precision: str, technique: str = "") -> Capability:
    return Capability(
        DeviceKind.CPU, Precision(precision), technique, frozenset(), frozenset({"torch"})
    )


CATALOG = (
    BackendInfo("base", (_cap("fp32"),)),
    BackendInfo(
        "ov",
        (_cap("fp32"), _cap("int8", "nncf")),
        (
            Knob("fp_layers", (1, 0, 2), CPU, INT8, backoff=LADDER),
            Knob("alpha", (0.75, -1.0), CPU, INT8),
        ),
    ),
)


def space(tune: bool = False, ths: float = 0.01) -> SearchSpace:
    settings = SpaceSettings(
        metric_drop_ths=ths, metric="cosine", tune_knobs=tune, baseline_backend="base"
    )
    return derive_space(CATALOG, HW, settings)


def _stats(p50: float) -> LatencyStats:
    return LatencyStats(16, p50, 0.0, p50, p50, p50, p50, p50 * 16)


Drops = Callable[[int], float]


def measure(candidate: Candidate, drops: Drops, ths: float = 0.01) -> TrialResult:
    """int8 with ``drops(fp_layers)`` (rejected above ``ths``), 3 ms; fp32 10 ms."""
    if candidate.precision is not Precision.INT8:
        return TrialResult(candidate, TrialStatus.COMPLETE, latency=_stats(0.010))
    drop = drops(int(candidate.knob_dict["fp_layers"]))
    if drop > ths:
        return TrialResult(candidate, TrialStatus.REJECTED, f"metric drop {drop}", metric_drop=drop)
    return TrialResult(candidate, TrialStatus.COMPLETE, latency=_stats(0.003), metric_drop=drop)


def drive(searcher: OptunaSearcher | ExhaustiveSearcher, drops: Drops) -> list[TrialResult]:
    results: list[TrialResult] = []
    while (candidate := searcher.ask()) is not None:
        results.append(measure(candidate, drops))
        searcher.tell(results[-1])
    return results


def int8_steps(results: list[TrialResult]) -> list[tuple[int, str]]:
    return [
        (int(r.candidate.knob_dict["fp_layers"]), r.status.value)
        for r in results
        if r.candidate.precision is Precision.INT8
    ]


def halving(layers: int) -> float:
    return 0.04 / (1 + layers)  # 0.02, 0.0133, 0.008: passes at fp_layers=4


def stuck(layers: int) -> float:
    return 0.032 - 0.001 * layers  # five short texts: more float MatMuls hardly help


@pytest.mark.parametrize("make", [ExhaustiveSearcher, OptunaSearcher])
def test_a_rejected_int8_is_tried_again_with_more_float_layers_until_it_passes(make):
    # Constrained: the space holds fp_layers=1 only; the back-off steps go beyond it.
    results = drive(make(space()), halving)
    assert int8_steps(results) == [(1, "rejected"), (2, "rejected"), (4, "complete")]
    int8 = [r.candidate.knob_dict for r in results if r.candidate.precision is Precision.INT8]
    assert {k["alpha"] for k in int8} == {0.75}  # the other knobs are kept
    assert results[-1].candidate.label == "ov fp32", "the back-off goes first, the rest after"


@pytest.mark.parametrize("make", [ExhaustiveSearcher, OptunaSearcher])
def test_a_step_that_hardly_helps_is_followed_by_one_jump_to_the_top(make):
    searcher = make(space())
    results = drive(searcher, stuck)
    # 0.031 closed 1/22 of the distance to 0.01 after the first step: not every step in
    # between (4), one last build with the most layers in float (8), then no more.
    assert int8_steps(results) == [(1, "rejected"), (2, "rejected"), (8, "rejected")]
    second, top = [r.candidate for r in results if r.candidate.precision is Precision.INT8][1:]
    assert searcher.backoff_reason(second) == (
        f"{_int8(results, 1).label} dropped 0.031 (accepted 0.01): more layers in higher precision"
    )
    assert searcher.backoff_reason(top).startswith("the last step: ")
    assert "hardly helped" in searcher.backoff_reason(top)
    assert searcher.backoff_reason(_int8(results, 1)) == ""  # the first was no back-off step


def _int8(results: list[TrialResult], layers: int) -> Candidate:
    return next(
        r.candidate
        for r in results
        if r.candidate.precision is Precision.INT8 and r.candidate.knob_dict["fp_layers"] == layers
    )


def test_a_step_that_closes_a_quarter_of_the_distance_goes_on():
    backoff = AccuracyBackoff(space(ths=0.01))
    first = Candidate.make("ov", "int8", HW.key, "nncf", {"fp_layers": 1, "alpha": 0.75})
    second = backoff.after(TrialResult(first, TrialStatus.REJECTED, "r", metric_drop=0.05))
    assert second is not None and second.knob_dict["fp_layers"] == 2
    enough = 0.05 - MIN_PROGRESS * (0.05 - 0.01)  # exactly a quarter of 0.04
    third = backoff.after(TrialResult(second, TrialStatus.REJECTED, "r", metric_drop=enough))
    assert third is not None and third.knob_dict["fp_layers"] == 4
    # The same drop again: no progress, so the ladder's top (8) once, and nothing after it.
    top = backoff.after(TrialResult(third, TrialStatus.REJECTED, "r", metric_drop=enough))
    assert top is not None and top.knob_dict["fp_layers"] == 8
    assert backoff.after(TrialResult(top, TrialStatus.REJECTED, "r", metric_drop=enough)) is None


def test_only_a_rejection_backs_off_and_never_past_the_last_step():
    backoff = AccuracyBackoff(space())
    top = Candidate.make("ov", "int8", HW.key, "nncf", {"fp_layers": 8, "alpha": 0.75})
    assert backoff.next_step(top) is None
    first = Candidate.make("ov", "int8", HW.key, "nncf", {"fp_layers": 1, "alpha": 0.75})
    assert backoff.after(TrialResult(first, TrialStatus.FAILED, "build raised")) is None
    assert backoff.after(TrialResult(first, TrialStatus.PRUNED, "slow", _stats(1.0))) is None
    fp32 = Candidate.make("ov", "fp32", HW.key)
    assert backoff.after(TrialResult(fp32, TrialStatus.REJECTED, "r", metric_drop=0.5)) is None
    rejected = TrialResult(first, TrialStatus.REJECTED, "r", metric_drop=0.5)
    assert backoff.after(rejected) is not None
    assert backoff.after(rejected) is None  # never proposed twice


def test_a_tuned_search_enqueues_an_in_space_step_in_the_study_and_never_measures_it_twice():
    searcher = OptunaSearcher(space(tune=True))
    results = drive(searcher, halving)
    measured = [r.candidate for r in results]
    # Both alphas back off to fp_layers=4, beyond the knob's choices: two configs more.
    assert len(measured) == len(set(measured)) == space(tune=True).size + 2
    steps = int8_steps(results)
    assert steps[:3] == [(1, "rejected"), (2, "rejected"), (4, "complete")]  # first, in a row
    in_study = [t.params.get("ov.fp_layers") for t in searcher.study.trials]
    assert 2 in in_study and 4 not in in_study  # 4 is beyond the knob's choices


def test_a_pending_step_of_an_exhaustive_search_is_moved_first_not_repeated():
    searcher = ExhaustiveSearcher(space(tune=True))
    results = drive(searcher, halving)
    steps = int8_steps(results)
    assert steps[:3] == [(1, "rejected"), (2, "rejected"), (4, "complete")]
    assert len(results) == len({r.candidate for r in results}) == space(tune=True).size + 2


# -- through optimize_model ---------------------------------------------------------------


@pytest.fixture
def float_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    use_backends(monkeypatch, "fake_layers=speedster_dist.testing.fakes:FLOAT_LAYERS")


def test_optimize_model_backs_off_an_int8_candidate_until_it_passes(float_layers: None) -> None:
    torch.manual_seed(3)
    data = [((torch.randn(1, 16),), torch.tensor([i % 4])) for i in range(10)]
    learner = optimize_model(
        tiny_mlp(),
        data,
        metric_drop_ths=0.05,
        ignore_compilers=["onnxruntime", "openvino", "torch_compile", "torchscript", "tensorrt"],
        executor=InlineExecutor(),
        # load_check off: on this shared machine the timed trials would carry the load note.
        measure_settings=MeasureSettings(
            warmup_calls=1, warmup_s=0, min_calls=5, min_duration_s=0, load_check=False
        ),
        device="cpu",
        progress=False,
    )
    int8 = [r for r in learner.results if r.candidate.precision is Precision.INT8]
    # Relative error 0.4 / (1 + fp_layers), read by numeric_precision as e / (1 + e).
    assert [(r.candidate.knob_dict["fp_layers"], r.status) for r in int8] == [
        (1, TrialStatus.REJECTED),
        (2, TrialStatus.REJECTED),
        (4, TrialStatus.REJECTED),
        (8, TrialStatus.COMPLETE),
    ]
    for r in int8:
        error = 0.4 / (1 + r.candidate.knob_dict["fp_layers"])
        assert r.metric_drop == pytest.approx(error / (1 + error), rel=1e-3)
        # The build's note reaches every int8 result through the trial runner, rejected too.
        assert r.notes == (FLOAT_LAYERS.NOTE,)
    # Each retry records why it was tried (the candidate before it and its drop).
    reasons = [dict(r.extra).get("backoff_after", "") for r in int8]
    assert reasons[0] == ""
    for before, why in zip(int8, reasons[1:], strict=False):
        assert why == (
            f"{before.candidate.label} dropped {before.metric_drop:.4g} (accepted 0.05): "
            "more layers in higher precision"
        )
    assert "3 candidate(s) rejected for their metric drop were retried" in learner.summary
