import pytest
import torch

from speedster_dist.backends import BuildConfig, SourceModel, UnsupportedCandidate, get_backend
from speedster_dist.backends.openvino import OpenVinoCompiled
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.testing.backend_contract import check_backend_contract, contract_model

_BF16_FEATURES = frozenset({"avx512_bf16", "amx_bf16"})


def _cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool(flags & _BF16_FEATURES)


@pytest.mark.parametrize("kind", ["mlp", "bert"])
def test_openvino_knobs_contract(tmp_path, kind):
    knobs = {"performance_hint": "THROUGHPUT", "num_streams": 1, "inference_num_threads": 1}
    check_backend_contract("openvino", "fp32", "", tmp_path, tolerance=1e-4, kind=kind, knobs=knobs)


def test_openvino_declares_bf16_as_needing_native_bf16():
    backend = get_backend("openvino")
    (bf16,) = [c for c in backend.capabilities if c.precision is Precision.BF16]
    assert bf16.device is DeviceKind.CPU
    assert bf16.requires_any == _BF16_FEATURES
    assert bf16.sources == frozenset({"torch", "onnx"})
    assert all(c.device is DeviceKind.CPU for c in backend.capabilities)


def test_openvino_bf16_build_matches_the_cpu(tmp_path):
    # Without bf16 instructions OpenVINO silently keeps f32; the backend refuses the build
    # so that f32 speed is never recorded as bf16.
    model = contract_model("mlp")
    config = BuildConfig(Precision.BF16, DeviceKind.CPU)
    backend = get_backend("openvino")
    if _cpu_has_native_bf16():
        compiled = backend.build(model.source, model.calibration, config, tmp_path)
        assert isinstance(compiled, OpenVinoCompiled)
        assert compiled.inference_precision == "bf16"
    else:
        with pytest.raises(UnsupportedCandidate, match="no native bf16"):
            backend.build(model.source, model.calibration, config, tmp_path)


def test_openvino_is_cpu_only():
    reason = get_backend("openvino").unavailable_reason(DeviceKind.GPU)
    assert reason is not None and "CPU" in reason


def test_openvino_rejects_dynamic_int8(tmp_path):
    model = contract_model("mlp")
    config = BuildConfig(Precision.INT8, DeviceKind.CPU, technique="dynamic")
    with pytest.raises(UnsupportedCandidate, match="static"):
        get_backend("openvino").build(model.source, model.calibration, config, tmp_path)


def test_openvino_feeds_only_the_inputs_the_graph_kept(tmp_path):
    # BERT's export may drop inputs it never reads; the call still takes every source input.
    model = contract_model("bert")
    compiled = get_backend("openvino").build(
        model.source, model.calibration, BuildConfig(Precision.FP32, DeviceKind.CPU), tmp_path
    )
    outputs = compiled(*model.validation[0])
    assert len(outputs) == len(model.source.output_names)
    assert all(o.dtype.is_floating_point for o in outputs)


def test_openvino_builds_a_static_onnx_file_with_dynamic_axes(tmp_path):
    # A user's ONNX file exported with fixed shapes: declared dynamic axes are reshaped.
    model = contract_model("mlp")
    module = model.source.module
    assert module is not None
    path = tmp_path / "static.onnx"
    torch.onnx.export(
        module,
        model.source.example_inputs,
        str(path),
        input_names=["input"],
        output_names=["output_0"],
        dynamo=False,
    )
    source = SourceModel(
        input_names=("input",),
        output_names=("output_0",),
        example_inputs=model.source.example_inputs,
        onnx_path=path,
        dynamic_axes={"input": {0: "batch"}},
    )
    config = BuildConfig(Precision.FP32, DeviceKind.CPU)
    compiled = get_backend("openvino").build(source, model.calibration, config, tmp_path)
    batch = torch.randn(3, 16)
    (out,) = compiled(batch)
    with torch.inference_mode():
        (expected,) = module(batch)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_openvino_int8_with_tuned_calibration(tmp_path):
    # The unconstrained search's calibration knobs: every held-in sample, per-channel scales.
    knobs = {"per_channel": True, "calibration_samples": 0, "calibration_method": "minmax"}
    drop = check_backend_contract(
        "openvino", "int8", "static", tmp_path, tolerance=0.3, kind="bert", knobs=knobs
    )
    assert drop > 0
