"""The ONNX Runtime backend: the shared contract on CPU (GPU behind the marker), plus its own."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from speedster_dist.backends import (
    BuildConfig,
    SourceModel,
    UnsupportedCandidate,
    _onnx,
    get_backend,
)
from speedster_dist.backends.onnxruntime import OrtCompiled
from speedster_dist.cache import CACHE_ENV
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.testing.backend_contract import check_backend_contract, contract_model

pytest.importorskip("onnxruntime")

BACKEND = get_backend("onnxruntime")
CPU, GPU = DeviceKind.CPU, DeviceKind.GPU


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> object:
    # One cache for the module: later builds of the same model reuse the export, as on a node.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("onnx-cache")))
        yield


def _min_cosine(compiled: object, kind: str) -> float:
    """Smallest cosine similarity, over outputs, between the candidate's and eager's outputs.

    Each output is compared over all validation samples at once: one batch-1 sample of the
    mlp has only four numbers, too few for a stable cosine.
    """
    model = contract_model(kind)
    assert model.source.module is not None
    with torch.inference_mode():
        want = [model.source.module(*sample) for sample in model.validation]
        got = [compiled(*sample) for sample in model.validation]  # type: ignore[operator]
    worst = 1.0
    for index in range(len(want[0])):
        a = torch.cat([w[index].flatten() for w in want]).double()
        b = torch.cat([g[index].flatten() for g in got]).double()
        worst = min(worst, float(a @ b / (a.norm() * b.norm())))
    return worst


def _build(
    kind: str, precision: str, technique: str, tmp_path: Path, **knobs: object
) -> OrtCompiled:
    model = contract_model(kind)
    config = BuildConfig(Precision(precision), CPU, technique, knobs)
    compiled = BACKEND.build(model.source, model.calibration, config, tmp_path)
    assert isinstance(compiled, OrtCompiled)
    return compiled


# int8 on tiny random models: the mlp's outputs sit near zero, so Speedster's relative
# metric reads ~0.6 for a correct build (bert ~0.07); the contract still catches wrong
# shapes, NaN and inf, and the cosine check catches garbage (~0). Measured cosines:
# bert >= 0.9998, mlp 0.85-0.95 (its tiny outputs are sums of cancelling terms).
_TOLERANCE = {"fp32": {"mlp": 1e-4, "bert": 1e-4}, "int8": {"mlp": 0.9, "bert": 0.2}}
_INT8_MIN_COSINE = {"mlp": 0.8, "bert": 0.99}


@pytest.mark.parametrize("kind", ["mlp", "bert"])
@pytest.mark.parametrize("technique", ["dynamic", "static"])
def test_int8_keeps_the_direction_of_the_outputs(tmp_path: Path, kind: str, technique: str) -> None:
    # The contract itself (every precision): tests/unit/backends/test_contract.py.
    compiled = _build(kind, "int8", technique, tmp_path)
    assert _min_cosine(compiled, kind) > _INT8_MIN_COSINE[kind]
    # Calibrated on the contract model's 4 held-in samples: fewer than 16 distinct ones.
    calibrated = "int8 was calibrated on 4 distinct sample(s) (of 4 held in)"
    assert [calibrated in note for note in compiled.notes] == (
        [True] if technique == "static" else []
    )


@pytest.mark.parametrize(
    ("precision", "technique", "knobs"),
    [
        ("fp32", "", {"graph_fusion": False, "intra_op_threads": 1}),
        ("int8", "dynamic", {"per_channel": True, "intra_op_threads": 2}),
        ("int8", "static", {"per_channel": True, "graph_fusion": False}),
        ("int8", "static", {"calibration_samples": 2, "calibration_method": "minmax"}),
    ],
)
def test_cpu_contract_with_knobs(
    tmp_path: Path, precision: str, technique: str, knobs: dict[str, object]
) -> None:
    tolerance = _TOLERANCE[precision]["bert"]
    check_backend_contract(
        "onnxruntime", precision, technique, tmp_path, tolerance=tolerance, knobs=knobs
    )


def test_onnx_file_as_source(tmp_path: Path) -> None:
    model = contract_model("bert")
    exported = _onnx.copy_onnx(_onnx.export_onnx(model.source, tmp_path), tmp_path / "user.onnx")
    given = SourceModel(
        input_names=model.source.input_names,
        output_names=model.source.output_names,
        example_inputs=model.source.example_inputs,
        onnx_path=exported,
    )
    assert given.source_format == "onnx"
    for precision, technique in (("fp32", ""), ("int8", "static")):
        config = BuildConfig(Precision(precision), CPU, technique)
        compiled = BACKEND.build(given, model.calibration, config, tmp_path / precision)
        sample = model.validation[1]
        with torch.inference_mode():
            want = model.source.module(*sample)  # type: ignore[misc]
        got = compiled(*sample)
        assert [t.shape for t in got] == [t.shape for t in want]
    assert _min_cosine(compiled, "bert") > _INT8_MIN_COSINE["bert"]


class _IgnoresSecondInput(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, unused: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.linear(x),)


def test_feeds_only_inputs_the_graph_kept(tmp_path: Path) -> None:
    module = _IgnoresSecondInput().eval()
    example = (torch.randn(2, 4), torch.zeros(2, dtype=torch.long))
    source = SourceModel(("x", "unused"), ("y",), example, module=module, fingerprint="")
    compiled = BACKEND.build(source, [example], BuildConfig(Precision.FP32, CPU), tmp_path)
    assert isinstance(compiled, OrtCompiled)
    assert _onnx.graph_input_names(compiled._path) == ["x"]  # the exporter dropped it
    torch.testing.assert_close(compiled(*example)[0], module(*example)[0])


def test_save_writes_plain_json_and_onnx(tmp_path: Path) -> None:
    compiled = _build("mlp", "int8", "static", tmp_path / "build")
    options = compiled.save(tmp_path)
    assert json.loads(json.dumps(options)) == options
    assert options["file"] == "model.onnx" and (tmp_path / "model.onnx").exists()
    assert options["providers"] == ["CPUExecutionProvider"]
    assert not any(p.suffix in (".pkl", ".pt") for p in tmp_path.iterdir())


def test_capabilities_and_knobs_are_data() -> None:
    assert all(c.sources == frozenset({"torch", "onnx"}) for c in BACKEND.capabilities)
    cpu = {(c.precision.value, c.technique) for c in BACKEND.capabilities if c.device is CPU}
    assert cpu == {("fp32", ""), ("int8", "dynamic"), ("int8", "static")}
    assert {k.name: k.default for k in BACKEND.knobs} == {
        "graph_fusion": True,
        "intra_op_threads": 0,
        "per_channel": False,
        "calibration_samples": 32,
        "calibration_method": "minmax",
    }


def test_undeclared_candidate_is_unsupported(tmp_path: Path) -> None:
    model = contract_model("mlp")
    with pytest.raises(UnsupportedCandidate, match="cannot build cpu/fp16"):
        BACKEND.build(model.source, [], BuildConfig(Precision.FP16, CPU), tmp_path)


def test_unavailable_without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert "cannot be imported" in (BACKEND.unavailable_reason(CPU) or "")


def test_gpu_unavailable_reason_is_explicit() -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available():
        pytest.skip("a usable GPU is present")
    assert BACKEND.unavailable_reason(GPU)


# -- GPU correctness, checked without a GPU --------------------------------------------------


def test_fp32_on_a_gpu_turns_tf32_off_and_tf32_turns_it_on() -> None:
    from speedster_dist.backends._ort_session import Runtime

    fp32 = Runtime(GPU).providers(Path("cache"))
    tf32 = Runtime(GPU, tf32=True).providers(Path("cache"))
    assert fp32[0] == ("CUDAExecutionProvider", {"use_tf32": 0})
    assert tf32[0] == ("CUDAExecutionProvider", {"use_tf32": 1})
    profile = ("x:1x8", "x:1x12", "x:1x32")
    trt = Runtime(GPU, tensorrt=True, trt_fp16=True, trt_profile=profile).providers(Path("c"))
    name, options = trt[0]
    assert name == "TensorrtExecutionProvider" and options["trt_fp16_enable"] is True
    assert options["trt_profile_opt_shapes"] == "x:1x12" and options["trt_engine_cache_enable"]
    assert Runtime.from_json(Runtime(GPU, tf32=True, trt_profile=profile).to_json(), GPU) == (
        Runtime(GPU, tf32=True, trt_profile=profile)
    )


@pytest.mark.parametrize(
    ("requested", "active"),
    [
        ({"tensorrt": True}, ["CUDAExecutionProvider", "CPUExecutionProvider"]),
        ({}, ["CPUExecutionProvider"]),
    ],
)
def test_a_silent_provider_fallback_is_an_unsupported_candidate(
    requested: dict[str, Any], active: list[str]
) -> None:
    from speedster_dist.backends._ort_session import Runtime, check_providers

    with pytest.raises(UnsupportedCandidate, match="ONNX Runtime made a session on"):
        check_providers(active, Runtime(GPU, **requested))
    check_providers(["CPUExecutionProvider"], Runtime(CPU))  # what was asked: fine


def test_timed_calls_leave_outputs_where_the_session_made_them(tmp_path: Path) -> None:
    compiled = _build("bert", "fp32", "", tmp_path)
    assert isinstance(compiled, OrtCompiled)
    sample = contract_model("bert").validation[0]
    binding = compiled.run_on_device(*sample)
    bound = [torch.from_numpy(o) for o in binding.copy_outputs_to_cpu()]
    for got, want in zip(bound, compiled(*sample), strict=True):
        torch.testing.assert_close(got.float(), want)


def test_the_tensorrt_profile_covers_the_samples_and_engines_travel_with_the_model(
    tmp_path: Path,
) -> None:
    from speedster_dist.backends.onnxruntime import _trt_profile

    model = contract_model("bert")
    path = _onnx.export_onnx(model.source, tmp_path)
    profile = _trt_profile(path, model.source, model.calibration)
    assert profile is not None
    low, opt, high = profile
    assert "input_ids:1x1," in low + ","  # dynamic dims may shrink to 1
    example = "x".join(str(n) for n in model.source.example_inputs[0].shape)
    assert f"input_ids:{example}" in opt
    longest = max(int(s[0].shape[-1]) for s in [*model.calibration, model.source.example_inputs])
    high_ids = next(p for p in high.split(",") if p.startswith("input_ids:"))
    assert int(high_ids.rsplit("x", 1)[1]) >= longest  # and grow past the longest sample
    compiled = _build("mlp", "fp32", "", tmp_path / "m")
    cache = tmp_path / "m" / "trt_cache"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "engine.bin").write_bytes(b"engine")  # what the TensorRT EP leaves there
    saved = tmp_path / "saved"
    saved.mkdir()
    compiled.save(saved)
    assert (saved / "trt_cache" / "engine.bin").read_bytes() == b"engine"


def test_inter_op_threads_run_the_graph_in_parallel_mode_and_are_saved(tmp_path: Path) -> None:
    import onnxruntime as ort

    from speedster_dist.backends._ort_session import Runtime

    model = contract_model("mlp")
    config = BuildConfig(Precision.FP32, CPU, "", {"inter_op_threads": 2})
    compiled = BACKEND.build(model.source, model.calibration, config, tmp_path / "build")
    assert isinstance(compiled, OrtCompiled)
    options = compiled._session.get_session_options()
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert options.inter_op_num_threads == 2
    saved = compiled.save(tmp_path)
    assert saved["inter_op_threads"] == 2
    assert Runtime.from_json(saved, CPU).inter_op_threads == 2
    for bad in (-1, 2000, "2", True):
        with pytest.raises(UnsupportedCandidate, match="options are not valid"):
            Runtime.from_json({**saved, "inter_op_threads": bad}, CPU)
