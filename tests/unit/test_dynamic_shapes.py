"""Learners of Hugging Face text models take what the original takes: any batch, any length.

Optimized on 32-token samples, a learner is called with batch 2 and 13 tokens: every backend
built from the default (dynamic) source model gives the original's outputs; a learner forced
to static shapes refuses the call with an error naming the shape it was built for.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from speedster_dist import ShapeError, load_model, optimize_model
from speedster_dist.artifacts import ArtifactError, WinnerEntry
from speedster_dist.backends import BuildConfig, get_backend
from speedster_dist.learner import InferenceLearner
from speedster_dist.measure import MeasureSettings
from speedster_dist.modelio import hf_text_axes
from speedster_dist.options import parse_run_options
from speedster_dist.prepare import prepare
from speedster_dist.records import DeviceKind, HardwareType, Precision, SavedCandidate
from speedster_dist.runtime import InlineExecutor, backend_catalog
from speedster_dist.testing.models import tiny_bert, tiny_mlp, token_batch

TINY = MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=3, min_duration_s=0.0)
SAMPLES = [token_batch(seq_len=32, seed=i) for i in range(5)]
FP32_CPU = BuildConfig(Precision.FP32, DeviceKind.CPU)


def _new_shape() -> dict[str, torch.Tensor]:
    call = token_batch(seq_len=13, batch=2, seed=42)
    call["attention_mask"][1, 9:] = 0  # a padded second row, as a tokenizer makes it
    return call


def _eager(model: torch.nn.Module, call: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        out = model(**call)
    return out.last_hidden_state, out.pooler_output


def _assert_same(out, expected) -> None:
    got = (out.last_hidden_state, out.pooler_output)
    for tensor, reference in zip(got, expected, strict=True):
        assert tensor.shape == reference.shape
        assert torch.allclose(tensor, reference, rtol=1e-4, atol=1e-4)


def _prepared(model, dynamic_info=None):
    return prepare(model, SAMPLES, parse_run_options(), dynamic_info)


def _entry(backend: str) -> WinnerEntry:
    hardware = HardwareType("cpu-test", DeviceKind.CPU, "test")
    saved = SavedCandidate(backend, DeviceKind.CPU.value, {}, {})
    return WinnerEntry(hardware, backend, "fp32", "", {}, {}, saved)


def _cpu_backends() -> list[str]:
    return [
        info.name
        for info in backend_catalog(DeviceKind.CPU)
        if info.unavailable is None
        and any(c.precision is Precision.FP32 and "torch" in c.sources for c in info.capabilities)
    ]


def test_token_inputs_of_a_hugging_face_model_are_dynamic_by_default():
    prepared = _prepared(tiny_bert())
    axes = prepared.payload.source.dynamic_axes
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        assert axes[name] == {0: "batch", 1: "sequence"}
    assert prepared.payload.source.dynamic_by_default  # no sample varied, nobody asked
    # The outputs follow: found by running a probe of another shape.
    assert set(axes["last_hidden_state"]) == {0, 1} and set(axes["pooler_output"]) == {0}
    assert prepared.io.input_shapes == ((None, None),) * 3
    # The search still times the samples' shape.
    assert tuple(prepared.payload.source.example_inputs[0].shape) == (1, 32)


def test_other_models_keep_their_samples_shape():
    mlp = tiny_mlp()
    assert hf_text_axes(mlp, ("x",), (torch.randn(1, 16),)) == {}
    decoder = hf_text_axes(
        tiny_bert(), ("input_ids", "decoder_input_ids"), (torch.ones(1, 4, dtype=torch.long),) * 2
    )
    assert decoder["decoder_input_ids"] == {0: "batch", 1: "decoder_sequence"}
    features = hf_text_axes(tiny_bert(), ("inputs_embeds",), (torch.randn(1, 4, 32),))
    assert features == {}  # float features: no token axes to guess


# Backends that keep the samples' shapes by default: dynamic shapes cost them more than 3%
# at the samples' shape (docs/benchmarks.md, benchmarks/dynamic_shapes.py).
FIXED_BY_DEFAULT = {"openvino"}


@pytest.mark.slow
@pytest.mark.parametrize("backend", _cpu_backends())
def test_every_backend_built_by_default_takes_a_new_batch_and_length(backend, tmp_path):
    model = tiny_bert()
    prepared = _prepared(model)
    payload = prepared.payload
    compiled: Any = get_backend(backend).build(
        payload.source, payload.calibration, FP32_CPU, tmp_path
    )
    learner = InferenceLearner(compiled, prepared.io, _entry(backend))
    _assert_same(learner(**SAMPLES[0]), _eager(model, SAMPLES[0]))  # the timed shape
    call = _new_shape()
    if backend not in FIXED_BY_DEFAULT:
        assert not getattr(compiled, "fixed_shapes", None)
        _assert_same(learner(**call), _eager(model, call))
        return
    assert dict(compiled.fixed_shapes)["input_ids"] == (1, 32)
    with pytest.raises(ShapeError) as info:
        learner(**call)
    message = str(info.value)
    assert f"the {backend} fp32 winner was built for input_ids [1, 32]" in message
    assert "shape [2, 13]" in message and "dynamic_info=" in message
    assert f"ignore_compilers=[{backend!r}]" in message


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(FIXED_BY_DEFAULT & set(_cpu_backends())))
def test_a_fixed_by_default_backend_takes_the_axes_dynamic_info_asks_for(backend, tmp_path):
    model = tiny_bert()
    axes = {0: "batch", 1: "sequence"}
    prepared = _prepared(model, dynamic_info={"inputs": [axes, axes, axes]})
    payload = prepared.payload
    assert not payload.source.dynamic_by_default
    compiled: Any = get_backend(backend).build(
        payload.source, payload.calibration, FP32_CPU, tmp_path
    )
    assert not compiled.fixed_shapes
    learner = InferenceLearner(compiled, prepared.io, _entry(backend))
    call = _new_shape()
    _assert_same(learner(**call), _eager(model, call))


def test_a_static_learner_names_the_shape_it_was_built_for(tmp_path):
    model = tiny_bert()
    prepared = _prepared(model, dynamic_info={"inputs": []})  # the user asks for static shapes
    assert prepared.io.input_shapes == ((1, 32),) * 3
    payload = prepared.payload
    compiled = get_backend("openvino").build(payload.source, [], FP32_CPU, tmp_path)
    learner = InferenceLearner(compiled, prepared.io, _entry("openvino"))
    _assert_same(learner(**SAMPLES[1]), _eager(model, SAMPLES[1]))
    with pytest.raises(ShapeError) as info:
        learner(**_new_shape())
    message = str(info.value)
    assert "built for input_ids [1, 32]" in message and "shape [2, 13]" in message
    assert "dynamic_info=" in message
    assert "incompatible" not in message  # not OpenVINO's own words


@pytest.mark.slow  # a search with ONNX Runtime and OpenVINO builds: 10-20 s on 2 cores
def test_an_optimized_learner_takes_a_new_length_and_keeps_it_when_saved(tmp_path):
    model = tiny_bert()
    learner = optimize_model(
        model,
        SAMPLES,
        executor=InlineExecutor(),
        measure_settings=TINY,
        progress=False,
        device="cpu",
        ignore_compilers=["torch_compile", *FIXED_BY_DEFAULT],
    )
    call = _new_shape()
    _assert_same(learner(**call), _eager(model, call))
    learner.save(tmp_path / "learner")
    loaded = load_model(tmp_path / "learner", trust_code=True)
    assert loaded.io.input_shapes == ((None, None),) * 3
    _assert_same(loaded(**call), _eager(model, call))
    with pytest.raises(ShapeError, match=r"input_ids \[any, any\]"):
        loaded(**{k: v[0] for k, v in call.items()})  # one axis missing: no backend takes it
    manifest = tmp_path / "learner" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["io"]["input_shapes"] = [["any"]]  # a manifest is untrusted: checked field by field
    manifest.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="input_shapes"):
        load_model(tmp_path / "learner", trust_code=True)


@pytest.mark.slow  # a search with ONNX Runtime and OpenVINO builds: 10-20 s on 2 cores
def test_a_search_records_which_candidates_keep_fixed_shapes():
    learner = optimize_model(
        tiny_bert(),
        SAMPLES,
        executor=InlineExecutor(),
        measure_settings=TINY,
        progress=False,
        device="cpu",
        ignore_compilers=["torch_compile", "torchscript"],
    )
    by_backend = {r.candidate.backend: r for r in learner.results if r.ok}
    for backend, result in by_backend.items():
        if backend in FIXED_BY_DEFAULT:
            assert dict(result.fixed_shapes)["input_ids"] == (1, 32)
        else:
            assert result.fixed_shapes == ()
    (entry,) = learner.entries.values()
    assert entry.metrics["fixed_shapes"] is (entry.backend in FIXED_BY_DEFAULT)
    fixed_line = f"fixed shapes: {entry.backend} takes only input_ids [1, 32]"
    assert (fixed_line in learner.summary) is (entry.backend in FIXED_BY_DEFAULT)


def test_an_onnx_file_keeps_the_axes_its_graph_leaves_open(tmp_path):
    mlp = tiny_mlp()
    path = tmp_path / "mlp.onnx"
    with torch.no_grad():
        torch.onnx.export(
            mlp,
            (torch.randn(1, 16),),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            dynamo=False,
        )
    data = [((torch.randn(1, 16),), 0) for _ in range(5)]
    learner = optimize_model(
        str(path),
        data,
        executor=InlineExecutor(),
        measure_settings=TINY,
        progress=False,
        device="cpu",
        ignore_compilers=["openvino"],
    )
    assert learner.io.input_shapes == ((None, 16),)
    x = torch.randn(3, 16)
    with torch.inference_mode():
        torch.testing.assert_close(learner(x), mlp(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ShapeError, match=r"built for x \[any, 16\]"):
        learner(torch.randn(3, 8))
