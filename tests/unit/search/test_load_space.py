"""Load points and throughput knobs join the space only when the objective serves load."""

from __future__ import annotations

from speedster_dist.records import (
    BackendInfo,
    Capability,
    DeviceKind,
    HardwareType,
    Knob,
    Precision,
)
from speedster_dist.search import SpaceSettings, derive_space
from speedster_dist.serving import Objective

CPU = HardwareType("cpu-test-2c", DeviceKind.CPU)
_CPU = frozenset({DeviceKind.CPU})
CATALOG = (
    BackendInfo(
        "torch",
        (Capability(DeviceKind.CPU, Precision.FP32),),
        throughput_knobs=(Knob("threads", (0, 1, 2), _CPU),),
    ),
    BackendInfo(
        "ov",
        (Capability(DeviceKind.CPU, Precision.FP32),),
        (
            Knob("hint", ("LATENCY", "THROUGHPUT"), _CPU, serving=("THROUGHPUT", "LATENCY")),
            Knob("per_channel", (False, True), _CPU),
        ),
    ),
)
THROUGHPUT = Objective("throughput", (1, 8), (1, 2))
LATENCY = Objective()


def space(objective=LATENCY, tune=False):
    settings = SpaceSettings(tune_knobs=tune, baseline_backend="torch", objective=objective)
    return derive_space(CATALOG, CPU, settings)


def test_a_latency_space_has_no_load_points_nor_throughput_knobs():
    latency = space()
    assert [c.label for c in latency] == ["torch fp32", "ov fp32 hint=LATENCY per_channel=False"]
    assert all(c.load_point is None for c in latency)
    tuned = space(tune=True)  # tuned, a serving knob keeps its own choices, in its order
    assert {c.knob_dict["hint"] for c in tuned if c.backend == "ov"} == {"LATENCY", "THROUGHPUT"}
    assert all("threads" not in c.knob_dict for c in tuned)


def test_a_throughput_space_serves_every_load_point_with_the_serving_knobs_tuned():
    found = space(THROUGHPUT)
    torch_configs = [c for c in found if c.backend == "torch"]
    ov_configs = [c for c in found if c.backend == "ov"]
    # torch: threads (3 choices) x 4 load points; ov: hint (2, tuned although knobs are not)
    # x per_channel (its default only) x 4 load points.
    assert len(torch_configs) == 3 * 4 and len(ov_configs) == 2 * 4
    assert len(found) == found.size == 20
    assert {(c.batch_size, c.concurrency) for c in ov_configs} == {(1, 1), (1, 2), (8, 1), (8, 2)}
    assert {c.knob_dict["per_channel"] for c in ov_configs} == {False}


def test_each_arms_default_is_its_largest_batch_most_in_flight_with_serving_defaults():
    defaults = space(THROUGHPUT).defaults()
    assert [c.label for c in defaults] == [
        "torch fp32 threads=0 @ 8x2",
        "ov fp32 hint=THROUGHPUT per_channel=False @ 8x2",
    ]
    assert space(THROUGHPUT).baseline == defaults[0]


def test_the_space_knows_its_load_points():
    found = space(THROUGHPUT)
    member = found.defaults()[1]
    assert found.contains(member)
    outside = member.__class__.make(
        member.backend, member.precision, member.hardware_key, "", member.knob_dict, (32, 2)
    )
    assert not found.contains(outside)
    assert not space().contains(member)  # a load point is not a config of a latency space
