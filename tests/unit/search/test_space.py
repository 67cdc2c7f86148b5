import pytest

from speedster_dist.records import (
    BackendInfo,
    Capability,
    DeviceKind,
    HardwareType,
    Knob,
    Precision,
)
from speedster_dist.search import (
    SpaceSettings,
    allowed_precisions,
    capped_choices,
    derive_candidates,
    parse_optimization_time,
)

CPU = HardwareType("cpu-test-avx2-2c", DeviceKind.CPU, features=frozenset({"avx2"}))
BF16_CPU = HardwareType(
    "cpu-test-bf16", DeviceKind.CPU, features=frozenset({"avx2", "avx512_bf16"})
)
GPU = HardwareType("gpu-test", DeviceKind.GPU)
BOTH = frozenset({"torch", "onnx"})


def cap(device, precision, technique="", requires=(), sources=frozenset({"torch"})):
    return Capability(device, Precision(precision), technique, frozenset(requires), sources)


CATALOG = (
    BackendInfo("torch", (cap("cpu", "fp32"), cap("gpu", "fp32"))),
    BackendInfo(
        "ort",
        (
            cap("cpu", "fp32", sources=BOTH),
            cap("cpu", "int8", "dynamic", sources=BOTH),
            cap("cpu", "int8", "static", sources=BOTH),
            cap("gpu", "fp16", sources=BOTH),
        ),
        (
            Knob("threads", (0, 1), frozenset({DeviceKind.CPU})),
            Knob("fusion", (True, False), frozenset({DeviceKind.CPU, DeviceKind.GPU})),
        ),
    ),
    BackendInfo(
        "ov", (cap("cpu", "fp32"), cap("cpu", "bf16", requires={"avx512_bf16", "amx_bf16"}))
    ),
    BackendInfo("broken", (cap("cpu", "fp32"),), unavailable="cannot import: boom"),
)


def labels(cands):
    return [c.label for c in cands]


def test_no_threshold_means_fp32_only_baseline_first():
    cands = derive_candidates(
        CATALOG, CPU, SpaceSettings(metric_drop_ths=None, baseline_backend="torch")
    )
    assert labels(cands) == ["torch fp32", "ort fp32 fusion=True threads=0", "ov fp32"]
    assert all(c.hardware_key == CPU.key for c in cands)


def test_speedster_precision_rules():
    assert allowed_precisions(0) == {Precision.FP32}
    assert allowed_precisions(0.01) == {
        Precision.FP32,
        Precision.TF32,
        Precision.FP16,
        Precision.BF16,
    }
    assert Precision.TF32 not in allowed_precisions(0)  # fp32 means TF32 off
    assert Precision.INT8 in allowed_precisions(0.05)
    assert Precision.INT8 not in allowed_precisions(0.02)


def test_reduced_precisions_come_after_fp32_and_need_their_cpu_feature():
    plain = derive_candidates(CATALOG, CPU, SpaceSettings(metric_drop_ths=0.1))
    assert [c.precision for c in plain] == [Precision.FP32] * 3 + [Precision.INT8] * 2
    assert not any(c.precision is Precision.BF16 for c in plain)  # no bf16 unit here
    bf16 = derive_candidates(CATALOG, BF16_CPU, SpaceSettings(metric_drop_ths=0.1))
    assert any(c.backend == "ov" and c.precision is Precision.BF16 for c in bf16)


def test_device_filters_capabilities_and_knobs():
    cands = derive_candidates(CATALOG, GPU, SpaceSettings(metric_drop_ths=0.1))
    assert labels(cands) == ["torch fp32", "ort fp16 fusion=True"]  # the threads knob is CPU-only


def test_unavailable_ignored_and_source_format():
    settings = SpaceSettings(metric_drop_ths=0.1, ignored_backends=frozenset({"ov"}))
    assert "ov" not in {c.backend for c in derive_candidates(CATALOG, CPU, settings)}
    assert "broken" not in {c.backend for c in derive_candidates(CATALOG, CPU, SpaceSettings())}
    onnx = derive_candidates(
        CATALOG,
        CPU,
        SpaceSettings(metric_drop_ths=0.1, source_format="onnx", baseline_backend="ort"),
    )
    assert {c.backend for c in onnx} == {"ort"}
    assert onnx[0].label.startswith("ort fp32")


@pytest.mark.parametrize(
    "ignored, gone",
    [
        ({"int8"}, {"dynamic", "static"}),
        ({"static_quantization"}, {"static"}),
        ({"int8_dynamic"}, {"dynamic"}),
    ],
)
def test_ignore_compressors(ignored, gone):
    settings = SpaceSettings(metric_drop_ths=0.1, ignored_compressors=frozenset(ignored))
    techniques = {c.technique for c in derive_candidates(CATALOG, CPU, settings)}
    assert not techniques & gone


def test_tuning_expands_the_knob_grid():
    settings = SpaceSettings(metric_drop_ths=None, tune_knobs=True)
    ort = [c for c in derive_candidates(CATALOG, CPU, settings) if c.backend == "ort"]
    assert sorted(c.knobs for c in ort) == sorted(
        (("fusion", f), ("threads", t)) for f in (True, False) for t in (0, 1)
    )


def test_optimization_time():
    assert parse_optimization_time("constrained").seconds == 600
    assert not parse_optimization_time("constrained").tune_knobs
    assert parse_optimization_time("unconstrained").unlimited
    assert parse_optimization_time(30).seconds == 30.0
    for bad in ("fast", 0, -5, float("nan"), True):
        with pytest.raises(ValueError):
            parse_optimization_time(bad)


def test_a_knob_limited_to_a_technique_exists_only_on_its_arm():
    int8 = frozenset({Precision.INT8})
    catalog = (
        BackendInfo(
            "ort",
            (cap("cpu", "fp32"), cap("cpu", "int8", "dynamic"), cap("cpu", "int8", "static")),
            (
                Knob("per_channel", (False, True), frozenset({DeviceKind.CPU}), int8),
                Knob(
                    "calibration_samples",
                    (32, 0),
                    frozenset({DeviceKind.CPU}),
                    int8,
                    frozenset({"static"}),
                ),
            ),
        ),
    )
    settings = SpaceSettings(metric_drop_ths=0.1, tune_knobs=True, baseline_backend="ort")
    found: dict[str, set[tuple[tuple[str, object], ...]]] = {}
    for c in derive_candidates(catalog, CPU, settings):
        found.setdefault(c.technique, set()).add(c.knobs)
    assert found[""] == {()}
    assert found["dynamic"] == {(("per_channel", False),), (("per_channel", True),)}
    assert found["static"] == {
        (("calibration_samples", n), ("per_channel", p)) for n in (32, 0) for p in (False, True)
    }
    # Constrained: the static arm keeps the default, a bounded calibration.
    constrained = SpaceSettings(metric_drop_ths=0.1, baseline_backend="ort")
    static = [c for c in derive_candidates(catalog, CPU, constrained) if c.technique == "static"]
    assert [c.knob_dict for c in static] == [{"calibration_samples": 32, "per_channel": False}]


def _calibration_catalog() -> tuple[BackendInfo, ...]:
    where = (frozenset({DeviceKind.CPU}), frozenset({Precision.INT8}), frozenset({"static"}))
    knobs = (
        Knob("calibration_samples", (32, 0), *where, counts_samples=True),
        Knob("calibration_method", ("minmax", "entropy"), *where),
    )
    return (BackendInfo("ort", (cap("cpu", "fp32"), cap("cpu", "int8", "static")), knobs),)


@pytest.mark.parametrize(
    ("held_in", "choices"),
    [(7, (7,)), (40, (32, 40)), (32, (32,)), (None, (32, 0))],
)
def test_sample_count_knobs_are_capped_at_the_held_in_samples(held_in, choices):
    knob = Knob("calibration_samples", (32, 0), counts_samples=True)
    assert capped_choices(knob, held_in) == choices
    assert capped_choices(Knob("threads", (32, 0)), 7) == (32, 0)  # not a count of samples
    settings = SpaceSettings(
        metric_drop_ths=0.1, tune_knobs=True, baseline_backend="ort", held_in=held_in
    )
    static = [c for c in derive_candidates(_calibration_catalog(), CPU, settings) if c.technique]
    # Duplicates collapse: with 7 samples, 32 and "all" are one candidate per method.
    assert sorted({c.knob_dict["calibration_samples"] for c in static}) == sorted(choices)
    assert len(static) == 2 * len(choices)
    default = SpaceSettings(metric_drop_ths=0.1, baseline_backend="ort", held_in=held_in)
    first = [c for c in derive_candidates(_calibration_catalog(), CPU, default) if c.technique]
    assert first[0].knob_dict["calibration_samples"] == choices[0]
    assert f"calibration_samples={choices[0]}" in first[0].label
