import dataclasses
import math
from dataclasses import replace

import pytest

from speedster_dist.records import Precision, TrialResult, TrialStatus
from speedster_dist.runtime import (
    BUDGET_EXHAUSTED,
    NO_DEMAND,
    InlineExecutor,
    SearchHooks,
    SearchRequest,
    run_search,
)
from speedster_dist.search import Budget, SpaceSettings

from .conftest import FAKE_HW, fake_probe

UNLIMITED = Budget(math.inf, tune_knobs=False, label="test")


def search(payload, *names, ths=0.01, budget=UNLIMITED, tune=False, **kw):
    payload = replace(payload, metric_drop_ths=ths)
    # The 4 ms fake fp32 is the baseline: real eager on a tiny model would be faster than any fake.
    executor = InlineExecutor(fake_probe(*names))
    settings = SpaceSettings(metric_drop_ths=ths, tune_knobs=tune, baseline_backend="fake")
    return run_search(
        executor, SearchRequest(payload=payload, settings=settings, budget=budget, **kw)
    )


def by_label(outcome):
    return {r.candidate.label: r for r in outcome.results}


def test_fastest_accurate_candidate_wins(fakes, payload):
    outcome = search(payload, "fake", ths=0.01)
    results = by_label(outcome)
    assert results["fake fp32 slowdown=1"].is_baseline and results["fake fp32 slowdown=1"].ok
    # fp16 (2 ms, drop 0.004) beats fp32 (4 ms); int8 is not even tried at 0.01 (Speedster's rule).
    assert outcome.winners[FAKE_HW.key].candidate.label == "fake fp16 slowdown=1"
    assert "fake int8/dynamic slowdown=1" not in results
    fp16, fp32 = (
        results["fake fp16 slowdown=1"].latency.p50,
        results["fake fp32 slowdown=1"].latency.p50,
    )
    assert 0.002 <= fp16 < fp32
    assert fp32 >= 0.004
    assert set(outcome.saved) == {FAKE_HW.key}
    assert outcome.saved[FAKE_HW.key].files


def test_over_threshold_candidates_are_rejected_with_their_drop(fakes, payload):
    outcome = search(payload, "fake", ths=0.05)
    int8 = by_label(outcome)["fake int8/dynamic slowdown=1"]
    assert int8.status is TrialStatus.REJECTED
    assert int8.metric_drop == pytest.approx(0.5 / 1.5, rel=0.05)  # |x-1.5x| / 1.5|x|
    assert int8.latency is None  # a rejected candidate is never timed
    assert outcome.winners[FAKE_HW.key].candidate.precision is Precision.FP16


def test_no_threshold_tries_only_fp32_and_rejects_broken_fp32(fakes, payload):
    outcome = search(payload, "fake", "fake_faulty", ths=None)
    assert {r.candidate.precision for r in outcome.results} == {Precision.FP32}
    garbage = by_label(outcome)["fake_faulty fp32/garbage slowdown=1"]
    assert garbage.status is TrialStatus.REJECTED and garbage.metric_drop > 0.1


def test_a_failing_build_is_recorded_and_the_search_goes_on(fakes, payload):
    outcome = search(payload, "fake", "fake_faulty", ths=None, budget=UNLIMITED)
    failed = by_label(outcome)["fake_faulty fp32/raise slowdown=1"]
    assert failed.status is TrialStatus.FAILED
    assert "planted build failure" in failed.reason
    assert outcome.winners[FAKE_HW.key].candidate.backend == "fake"


def test_every_outcome_is_reported_as_it_arrives(fakes, payload):
    seen: list[TrialResult] = []
    outcome = search(payload, "fake", ths=0.05, hooks=SearchHooks(on_result=seen.append))
    assert seen == outcome.results
    assert len(seen) == 3  # baseline (fake fp32), fp16, int8


def test_budget_exhaustion_keeps_the_best_so_far(fakes, payload):
    outcome = search(payload, "fake", ths=0.05, budget=Budget(1e-9, False, "tiny"))
    assert outcome.budget_exhausted
    cancelled = [r for r in outcome.results if r.reason == BUDGET_EXHAUSTED]
    assert cancelled and all(r.status is TrialStatus.FAILED for r in cancelled)


def test_knob_tuning_finds_the_known_best(fakes, payload):
    outcome = search(payload, "fake", ths=None, tune=True)
    assert outcome.winners[FAKE_HW.key].candidate.knob_dict == {"slowdown": 1}
    fake_fp32 = [r for r in outcome.results if r.candidate.backend == "fake"]
    assert sorted(r.candidate.knob_dict["slowdown"] for r in fake_fp32) == [1, 2, 4]
    lat = {r.candidate.knob_dict["slowdown"]: r.latency.p50 for r in fake_fp32}
    assert lat[1] < lat[2] < lat[4]


def test_skipped_backends_are_listed(fakes, payload):
    outcome = search(payload, "fake", ths=None)
    assert outcome.skipped[FAKE_HW.key] == []
    payload = replace(payload, metric_drop_ths=None)
    executor = InlineExecutor(fake_probe("torch", "fake"))
    settings = SpaceSettings(ignored_backends=frozenset({"fake"}))
    outcome = run_search(
        executor, SearchRequest(payload=payload, settings=settings, budget=UNLIMITED)
    )
    assert outcome.skipped[FAKE_HW.key] == ["fake: ignored by request"]
    assert {r.candidate.backend for r in outcome.results} == {"torch"}


def test_no_hardware_of_the_requested_device(fakes, payload):
    from speedster_dist.records import DeviceKind

    with pytest.raises(ValueError, match="no gpu node"):
        search(payload, "fake", devices=frozenset({DeviceKind.GPU}))


def test_a_trial_that_cannot_beat_the_bar_is_pruned_early(fakes, payload):
    from speedster_dist.measure import MeasureSettings
    from speedster_dist.records import Candidate
    from speedster_dist.runtime import run_trial

    measure = MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=64, min_duration_s=1.0)
    payload = replace(payload, metric_drop_ths=None, measure=measure)
    slow = Candidate.make("fake", "fp32", FAKE_HW.key, knobs={"slowdown": 4})  # 16 ms a call
    result, saved = run_trial(payload, slow, FAKE_HW, prune_above_s=0.004)
    assert result.status is TrialStatus.PRUNED and saved is None
    assert "cannot beat the best 4 ms" in result.reason
    assert result.latency is not None
    assert result.latency.count < 64 and result.latency.total_s < 0.6
    payload = replace(payload, measure=replace(payload.measure, min_calls=10, min_duration_s=0.1))
    fast, saved = run_trial(payload, slow, FAKE_HW, prune_above_s=1.0)
    assert fast.ok and saved is not None


def test_each_hardware_type_is_announced_once_with_its_planned_trials(fakes, payload):
    planned = []
    outcome = search(
        payload,
        "fake",
        ths=0.01,
        hooks=SearchHooks(on_plan=lambda key, n: planned.append((key, n))),
    )
    assert planned == [(FAKE_HW.key, planned[0][1])]  # once, before the trials
    tried = [r for r in outcome.results if r.candidate.hardware_key == FAKE_HW.key]
    assert 1 <= len(tried) <= planned[0][1]  # never more trials than planned


def test_an_executor_without_the_optional_capabilities_gets_their_defaults(fakes, payload):
    executor = InlineExecutor(fake_probe("fake"))
    assert executor.node_groups() == {}
    demand = executor.group_demand(["cpu-a"], 600)
    assert demand is NO_DEMAND and not demand.pending() and demand.missing() == {}
    outcome = search(payload, "fake", demand=demand)
    assert outcome.node_groups == {} and outcome.missing_groups == {}
    assert outcome.winners[FAKE_HW.key].ok


def test_a_search_request_is_frozen_and_refuses_impossible_settings(payload):
    settings = SpaceSettings()
    request = SearchRequest(payload=payload, settings=settings, budget=UNLIMITED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.poll_s = 1.0  # type: ignore[misc]
    assert request.demand is NO_DEMAND and request.kept_contenders == 0
    assert replace(request, confirm_rounds=2, confirm_top=4).kept_contenders == 4
    for bad, match in (
        ({"devices": frozenset()}, "devices"),
        ({"confirm_rounds": -1}, "confirm_rounds"),
        ({"confirm_top": 0}, "confirm_top"),
        ({"poll_s": -0.5}, "poll_s"),
        ({"poll_s": math.nan}, "poll_s"),
    ):
        with pytest.raises(ValueError, match=match):
            SearchRequest(payload=payload, settings=settings, budget=UNLIMITED, **bad)


def test_a_composite_backend_is_skipped_when_one_of_its_parts_is_ignored(payload):
    """generate_split runs generate_onnxruntime and generate_openvino: ignoring either one
    leaves it out of the space, and the summary's skipped list says why."""
    from speedster_dist.records import BackendInfo, Capability, DeviceKind
    from speedster_dist.runtime._driver import _skipped_backends
    from speedster_dist.runtime._protocol import HardwareGroup

    cap = Capability(DeviceKind.CPU, Precision.FP32, "", frozenset(), frozenset({"torch"}))
    split = BackendInfo("split", (cap,), parts=("ort", "ov"))
    group = HardwareGroup(FAKE_HW, ("node",), (BackendInfo("ort", (cap,)), split))
    settings = SpaceSettings(ignored_backends=frozenset({"ov"}))
    request = SearchRequest(payload=payload, settings=settings, budget=UNLIMITED)
    assert _skipped_backends(group, request) == ["split: ignored by request (it runs ort, ov)"]
    assert split.ignored_by(frozenset({"ort"})) and split.ignored_by(frozenset({"split"}))
    assert not split.ignored_by(frozenset({"torch"}))
