"""Best-first search: the built-in prior per backend x precision x CPU features, the prior the
history teaches, and the warm start with the history's winners (simulated hardware only)."""

from __future__ import annotations

import pytest

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
from speedster_dist.search import (
    ExhaustiveSearcher,
    OptunaSearcher,
    SearchHistory,
    SpaceSettings,
    default_gain,
    derive_space,
    expected_gain,
)

AVX2 = HardwareType("cpu-avx2-2c", DeviceKind.CPU, features=frozenset({"avx2", "fma"}))
VNNI = HardwareType(
    "cpu-vnni-2c", DeviceKind.CPU, features=frozenset({"avx2", "avx512f", "avx512_vnni"})
)
SPR = HardwareType(
    "cpu-spr-2c",
    DeviceKind.CPU,
    features=frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}),
)
BF16_ONLY = frozenset({"avx512_bf16", "amx_bf16"})


def cap(precision, technique="", requires=()):
    return Capability(DeviceKind.CPU, Precision(precision), technique, frozenset(requires))


# Real backend names, declared here (no backend library is imported), in declaration order:
# the order a search used to follow, torch first and the ONNX consumers last.
CATALOG = (
    BackendInfo("torch", (cap("fp32"), cap("bf16", requires=BF16_ONLY))),
    BackendInfo("torchscript", (cap("fp32"),)),
    BackendInfo("torch_compile", (cap("fp32"),)),
    BackendInfo(
        "onnxruntime",
        (cap("fp32"), cap("int8", "dynamic"), cap("int8", "static")),
        (Knob("threads", (0, 1), frozenset({DeviceKind.CPU})),),
    ),
    BackendInfo("openvino", (cap("fp32"), cap("bf16", requires=BF16_ONLY), cap("int8", "static"))),
)


def order(hardware, ths=None, history=None):
    settings = SpaceSettings(metric_drop_ths=ths, history=history)
    return [c.label for c in derive_space(CATALOG, hardware, settings)]


def test_fp32_only_puts_openvino_and_onnxruntime_ahead_of_torchscript_and_compile():
    for hardware in (AVX2, VNNI, SPR):
        assert order(hardware) == [
            "torch fp32",  # the baseline stays first: every speedup is relative to it
            "openvino fp32",
            "onnxruntime fp32 threads=0",
            "torch_compile fp32",
            "torchscript fp32",
        ]


def test_bf16_first_on_cpus_with_native_bf16():
    labels = order(SPR, ths=0.01)  # int8 not allowed at this threshold
    assert labels[:3] == ["torch fp32", "openvino bf16", "openvino fp32"]
    assert labels.index("torch bf16") < labels.index("torchscript fp32")
    assert not any("bf16" in label for label in order(AVX2, ths=0.01))  # no bf16 unit there


def test_int8_first_on_vnni_and_after_fp32_without_it():
    vnni = order(VNNI, ths=0.1)
    assert vnni[1:4] == [
        "openvino int8/static",
        "onnxruntime int8/static threads=0",
        "onnxruntime int8/dynamic threads=0",
    ]
    avx2 = order(AVX2, ths=0.1)
    int8_at = [i for i, label in enumerate(avx2) if "int8" in label]
    fp32_fast = [avx2.index("openvino fp32"), avx2.index("onnxruntime fp32 threads=0")]
    assert min(int8_at) > max(fp32_fast)  # int8 without VNNI is not expected to pay


def test_default_gain_depends_on_features_not_on_this_machine():
    ov_bf16 = [default_gain("openvino", Precision.BF16, "", hw) for hw in (AVX2, SPR)]
    assert ov_bf16[1] > default_gain("openvino", Precision.FP32, "", SPR) > ov_bf16[0]
    assert default_gain("onnxruntime", Precision.INT8, "static", VNNI) > default_gain(
        "onnxruntime", Precision.INT8, "dynamic", VNNI
    )
    gpu = HardwareType("gpu-x", DeviceKind.GPU)
    assert default_gain("tensorrt", Precision.FP16, "", gpu) > default_gain(
        "torch", Precision.FP16, "", gpu
    )
    assert default_gain("my_plugin", Precision.FP32, "", AVX2) == 1.0  # unknown: like eager


def test_the_history_overrides_the_default_on_its_hardware_type_only():
    history = SearchHistory(speedups={AVX2.key: {"torchscript/fp32": 3.0, "openvino/fp32": 0.9}})
    learned = order(AVX2, history=history)
    assert learned[:2] == ["torch fp32", "torchscript fp32"]
    assert learned.index("openvino fp32") == len(learned) - 1  # 0.9: slower than eager here
    assert order(VNNI, history=history)[1] == "openvino fp32"  # another type: the default
    assert expected_gain("torchscript", Precision.FP32, "", AVX2, history) == 3.0


def test_the_history_winners_come_right_after_the_baseline():
    winners = (
        {"backend": "torch_compile", "precision": "fp32", "technique": "", "knobs": {}},
        # A knob config the space does not hold (knobs not tuned): its arm's default.
        {"backend": "onnxruntime", "precision": "fp32", "technique": "", "knobs": {"threads": 1}},
        {"backend": "openvino", "precision": "int8", "technique": "static", "knobs": {}},
        {"backend": "torch", "precision": "fp32", "technique": "", "knobs": {}},  # baseline
        {"backend": "gone", "precision": "fp32", "technique": "", "knobs": {}},
    )
    history = SearchHistory(winners={AVX2.key: winners, VNNI.key: winners[2:3]})
    space = derive_space(CATALOG, AVX2, SpaceSettings(history=history))
    # openvino int8 is not in this space (no threshold): left out, like the unknown backend.
    assert [c.label for c in space.warm_start] == [
        "torch_compile fp32",
        "onnxruntime fp32 threads=0",
    ]
    labels = [c.label for c in space]
    assert labels[:3] == ["torch fp32", "torch_compile fp32", "onnxruntime fp32 threads=0"]
    assert len(labels) == len(set(labels)) == 5  # nothing twice
    assert derive_space(CATALOG, VNNI, SpaceSettings(history=history)).warm_start == ()
    tuned = SpaceSettings(tune_knobs=True, history=history)
    tuned_warm = derive_space(CATALOG, AVX2, tuned).warm_start
    assert tuned_warm[1].knob_dict == {"threads": 1}  # the exact winner when the space has it


def _complete(candidate: Candidate, baseline: Candidate | None) -> TrialResult:
    p50 = 0.01
    stats = LatencyStats(8, p50, 0.0, p50, p50, p50, p50, p50 * 8)
    return TrialResult(
        candidate, TrialStatus.COMPLETE, latency=stats, is_baseline=candidate == baseline
    )


def test_optuna_asks_the_enqueued_warm_start_first_then_the_best_first_defaults():
    winners = ({"backend": "torchscript", "precision": "fp32", "technique": "", "knobs": {}},)
    history = SearchHistory(winners={VNNI.key: winners})
    space = derive_space(CATALOG, VNNI, SpaceSettings(metric_drop_ths=0.1, history=history))
    searcher = OptunaSearcher(space)
    asked = []
    for _ in range(5):
        candidate = searcher.ask()
        assert candidate is not None
        asked.append(candidate.label)
        searcher.tell(_complete(candidate, space.baseline))
    assert asked == [
        "torch fp32",
        "torchscript fp32",  # the history's winner on this type
        "openvino int8/static",
        "onnxruntime int8/static threads=0",
        "onnxruntime int8/dynamic threads=0",
    ]
    enqueued = [t for t in searcher.study.trials if t.system_attrs.get("fixed_params")]
    assert len(enqueued) == 5  # every one of them came from the queue, not the sampler


@pytest.mark.parametrize("hardware", [AVX2, SPR])
def test_two_trials_of_a_short_budget_reach_the_best_backend(hardware):
    """With a budget for the baseline and one more trial, the search measures OpenVINO (the
    planted best on every simulated CPU) instead of TorchScript, the next in the catalog."""
    space = derive_space(CATALOG, hardware, SpaceSettings(metric_drop_ths=None))
    exhaustive = ExhaustiveSearcher(space)
    first_two = [exhaustive.ask(), exhaustive.ask()]
    assert [c.backend for c in first_two if c] == ["torch", "openvino"]
