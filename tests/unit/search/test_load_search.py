"""Under a load objective, a config that differs from a rejected one only in knobs that serve
load (threads, streams, a hint) and its load point computes the same outputs: the searcher
tells it rejected like that one and never asks for it to be built (the latency objective is
unchanged: every config is its own). And an arm's default over the latency budget is tried
again at the next smaller batch before the sampler proposes anything."""

from __future__ import annotations

from speedster_dist.records import (
    BackendInfo,
    Candidate,
    Capability,
    DeviceKind,
    HardwareType,
    Knob,
    Precision,
    TrialResult,
    TrialStatus,
)
from speedster_dist.search import OptunaSearcher, SpaceSettings, derive_space
from speedster_dist.serving import Objective
from speedster_dist.testing.curves import LoadCurve

HW = HardwareType("cpu-test-2c", DeviceKind.CPU)
CPU = frozenset({DeviceKind.CPU})
INT8 = frozenset({Precision.INT8})


def cap(precision: str, technique: str = "") -> Capability:
    return Capability(DeviceKind.CPU, Precision(precision), technique)


CATALOG = (
    BackendInfo("base", (cap("fp32"),), throughput_knobs=(Knob("threads", (0, 1, 2), CPU),)),
    BackendInfo(
        "ov",
        (cap("fp32"), cap("int8", "static")),
        (
            Knob("hint", ("LATENCY", "THROUGHPUT"), CPU, serving=("THROUGHPUT", "LATENCY")),
            Knob("streams", (0, 1, 2), CPU, serving=(0, 1, 2)),
            Knob("per_channel", (False, True), CPU, INT8),  # changes int8's outputs
        ),
    ),
)
THROUGHPUT = Objective("throughput", (1, 8), (1, 2))


def space(objective: Objective = THROUGHPUT):
    settings = SpaceSettings(
        metric_drop_ths=0.05, tune_knobs=True, baseline_backend="base", objective=objective
    )
    return derive_space(CATALOG, HW, settings)


def trial(candidate: Candidate, objective: Objective) -> TrialResult:
    """int8 without per-channel scales loses too much whatever serves it; the rest is on
    a known curve."""
    if candidate.precision is Precision.INT8 and not candidate.knob_dict["per_channel"]:
        return TrialResult(candidate, TrialStatus.REJECTED, "metric drop 0.2", metric_drop=0.2)
    return LoadCurve(speed={"ov": 2.0}).result(candidate, objective)


def drive(searcher: OptunaSearcher, objective: Objective) -> list[TrialResult]:
    results = []
    while (candidate := searcher.ask()) is not None:
        results.append(trial(candidate, objective))
        searcher.tell(results[-1])
    return results


def test_the_outputs_key_leaves_out_what_only_serves_load():
    found = space()
    configs = [c for c in found if c.backend == "ov" and c.precision is Precision.INT8]
    keys = {found.outputs_key(c) for c in configs}
    # 2 hints x 3 streams x 4 load points x 2 per_channel: two outputs, per_channel's.
    assert len(configs) == 48 and len(keys) == 2
    assert keys == {
        ("ov/int8/static", (("per_channel", False),)),
        ("ov/int8/static", (("per_channel", True),)),
    }
    base = [c for c in found if c.backend == "base"]
    assert {found.outputs_key(c) for c in base} == {("base/fp32/", ())}


def test_a_latency_space_keys_every_config_apart():
    found = space(Objective())
    configs = list(found)
    assert len({found.outputs_key(c) for c in configs}) == len(configs)


def test_a_rejected_config_is_built_once_its_serving_siblings_never():
    searcher = OptunaSearcher(space(), max_duplicates=200, patience=None)
    results = drive(searcher, THROUGHPUT)
    rejected = [r for r in results if r.status is TrialStatus.REJECTED]
    assert len(rejected) == 1  # per_channel=False: one build, one verdict
    siblings = [t for t in searcher.study.trials if t.user_attrs.get("rejected_like")]
    assert siblings, "the sampler proposed rejected int8 configs again"
    assert {t.user_attrs["rejected_like"] for t in siblings} == {rejected[0].candidate.label}
    assert all(t.state.name == "FAIL" for t in siblings)
    assert all(t.params["ov.per_channel"] is False for t in siblings)
    # per_channel=True int8 configs are their own: measured, not told rejected.
    assert any(
        r.candidate.precision is Precision.INT8 and r.status is TrialStatus.COMPLETE
        for r in results
    )


BUDGET = Objective("throughput", (1, 8), (1, 2), latency_budget_ms=10.0)


def test_a_default_over_the_budget_is_tried_again_at_a_smaller_batch():
    # On the curve a call of 8 takes 18 ms (base) or 9 ms (ov): batch 8 is over a 10 ms p99
    # whatever serves it, batch 1 within it.
    fp32_only = derive_space(CATALOG, HW, SpaceSettings(baseline_backend="base", objective=BUDGET))
    searcher = OptunaSearcher(fp32_only, patience=1)
    results = drive(searcher, BUDGET)
    defaults = fp32_only.defaults()
    assert [r.candidate for r in results[: len(defaults)]] == defaults
    assert all(r.status is TrialStatus.INFEASIBLE for r in results[: len(defaults)])
    smaller = [r.candidate for r in results[len(defaults) : 2 * len(defaults)]]
    # Next, before anything is sampled: each default at batch 1, same knobs and calls in flight.
    assert smaller == [
        Candidate.make(c.backend, c.precision, c.hardware_key, c.technique, c.knob_dict, (1, 2))
        for c in defaults
    ]
    assert all(r.status is TrialStatus.COMPLETE for r in results[len(defaults) : 2 * len(defaults)])


def test_a_point_within_the_budget_is_not_tried_smaller():
    roomy = Objective("throughput", (1, 8), (1, 2), latency_budget_ms=1000.0)
    fp32_only = derive_space(CATALOG, HW, SpaceSettings(baseline_backend="base", objective=roomy))
    searcher = OptunaSearcher(fp32_only, patience=1)
    results = drive(searcher, roomy)
    assert all(r.status is TrialStatus.COMPLETE for r in results)
    # Nothing enqueued after the defaults: the sampler's proposals follow them.
    assert [r.candidate.batch_size for r in results[:2]] == [8, 8]
    assert searcher.finished()


def test_a_point_far_over_the_budget_skips_the_batches_that_cannot_fit():
    # At 8 a call's p99 is 25.9 ms for a 10 ms budget: proportionally at most 3 requests a
    # call fit, so batch 4 (13.75 ms, over too) is skipped for 1.
    wide = Objective("throughput", (1, 4, 8), (2,), latency_budget_ms=10.0)
    base = derive_space(CATALOG[:1], HW, SpaceSettings(baseline_backend="base", objective=wide))
    searcher = OptunaSearcher(base, patience=1)
    results = drive(searcher, wide)
    assert [(r.candidate.batch_size, r.status) for r in results[:2]] == [
        (8, TrialStatus.INFEASIBLE),
        (1, TrialStatus.COMPLETE),
    ]
