"""The shared ONNX helpers: export (cache, fallbacks, HF attention), feeds, quantization."""

from __future__ import annotations

import importlib
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from speedster_dist.backends import SourceModel, UnsupportedCandidate, _onnx
from speedster_dist.backends._onnx import export as onnx_export
from speedster_dist.backends._onnx import files as onnx_files
from speedster_dist.backends._onnx import quantize as onnx_quantize
from speedster_dist.cache import CACHE_ENV, entry_problem, publish_entry
from speedster_dist.modelio import FlatModule
from speedster_dist.testing.backend_contract import ContractModel, contract_model

if TYPE_CHECKING:
    import onnxruntime

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    return cache


@pytest.fixture(scope="module")
def bert() -> ContractModel:
    return contract_model("bert")


@pytest.fixture(scope="module")
def mlp() -> ContractModel:
    return contract_model("mlp")


def _session(path: Path) -> onnxruntime.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(path: Path, source: SourceModel, sample: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    session = _session(path)
    keep = {i.name for i in session.get_inputs()}
    return session.run(list(source.output_names), _onnx.feeds(source.input_names, sample, keep))


def _eager(source: SourceModel, sample: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    assert source.module is not None
    with torch.no_grad():
        return [t.numpy() for t in source.module(*sample)]


def _op_types(path: Path) -> Counter[str]:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


# --------------------------------------------------------------------------- import


def test_module_imports_without_onnx_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    import speedster_dist.backends as package

    for name in ("onnx", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` fail
    for name in ("_onnx", "onnxruntime"):  # re-imported below; put the originals back after
        monkeypatch.delitem(sys.modules, f"speedster_dist.backends.{name}", raising=False)
        monkeypatch.setattr(package, name, getattr(package, name, None), raising=False)
    helpers = importlib.import_module("speedster_dist.backends._onnx")
    backend = importlib.import_module("speedster_dist.backends.onnxruntime").BACKEND
    assert callable(helpers.export_onnx)
    from speedster_dist.records import DeviceKind

    assert "onnxruntime" in (backend.unavailable_reason(DeviceKind.CPU) or "")


# --------------------------------------------------------------------------- feeds


def test_feeds_share_memory_and_keep_int64() -> None:
    x = torch.randn(2, 3)
    ids = torch.arange(6).reshape(1, 6)
    out = _onnx.feeds(["x", "ids"], (x, ids))
    assert np.shares_memory(out["x"], x.numpy())
    assert out["ids"].dtype == np.int64


def test_feeds_filter_convert_and_check_count() -> None:
    half = torch.ones(2, dtype=torch.bfloat16)
    out = _onnx.feeds(["a", "b"], (half, torch.ones(1)), keep={"a"})
    assert list(out) == ["a"] and out["a"].dtype == np.float32
    with pytest.raises(ValueError, match="expected 2 inputs"):
        _onnx.feeds(["a", "b"], (half,))


# --------------------------------------------------------------------------- export


def test_export_is_cached_per_node(
    mlp: ContractModel, tmp_path: Path, _private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _onnx.export_onnx(mlp.source, tmp_path / "w1")
    assert first.is_relative_to(_private_cache) and first.name == "model.onnx"
    stamp = first.stat().st_mtime_ns

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached export should have been reused")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    second = _onnx.export_onnx(mlp.source, tmp_path / "w2")
    assert second == first and second.stat().st_mtime_ns == stamp
    assert first.parent.parent.parent == _private_cache / "onnx"
    assert not any(p.name.startswith(".") for p in (_private_cache / "onnx").iterdir()), "staging"


def test_export_race_lost_to_another_process(
    mlp: ContractModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_export_into = onnx_export._export_into
    key = f"{mlp.source.fingerprint}-{onnx_export._io_key(mlp.source)}-opset17"

    def export_while_another_process_publishes(source: SourceModel, path: Path, opset: int) -> None:
        real_export_into(source, path, opset)
        folder = path.parent.parent.parent  # <cache>/onnx/.<staging>/files/model.onnx

        def other(files: Path) -> None:
            real_export_into(source, files / "model.onnx", opset)

        publish_entry(folder, key, other)

    monkeypatch.setattr(onnx_export, "_export_into", export_while_another_process_publishes)
    path = _onnx.export_onnx(mlp.source, tmp_path)
    folder = path.parent.parent.parent
    assert path == folder / key / "files" / "model.onnx" and path.exists()
    assert [p.name for p in folder.iterdir()] == [key]  # the other's entry, no staging


def test_export_without_fingerprint_goes_to_workdir(
    mlp: ContractModel, tmp_path: Path, _private_cache: Path
) -> None:
    from dataclasses import replace

    path = _onnx.export_onnx(replace(mlp.source, fingerprint=""), tmp_path / "work")
    assert path.is_relative_to(tmp_path / "work") and path.exists()
    assert not _private_cache.exists()


def test_cache_key_covers_static_shapes(tmp_path: Path) -> None:
    # Same weights and axes, other static batch size: must not reuse the batch-1 export.
    from speedster_dist.modelio import make_source_model
    from speedster_dist.testing import models

    model = models.tiny_mlp()
    one, _ = make_source_model(model, ["input"], [(torch.randn(1, 16),)], keyword=False)
    two, _ = make_source_model(model, ["input"], [(torch.randn(2, 16),)], keyword=False)
    assert one.fingerprint == two.fingerprint
    assert _onnx.export_onnx(one, tmp_path) != _onnx.export_onnx(two, tmp_path)


def test_onnx_source_is_returned_as_is(tmp_path: Path) -> None:
    source = SourceModel(("x",), ("y",), (torch.ones(1),), onnx_path=tmp_path / "given.onnx")
    assert _onnx.export_onnx(source, tmp_path) == tmp_path / "given.onnx"


def test_export_keeps_user_model_unchanged(
    bert: ContractModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import PreTrainedModel

    module = bert.source.module
    assert isinstance(module, FlatModule)  # contract models are in flat form
    model = module.model
    assert isinstance(model, PreTrainedModel)
    config = model.config
    original = config._attn_implementation
    assert original != "eager"  # transformers' default (sdpa): the switch is exercised
    sample = bert.validation[0]
    before = _eager(bert.source, sample)
    seen: list[str] = []
    real_export = torch.onnx.export

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(config._attn_implementation)
        return real_export(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.onnx, "export", spy)
    _onnx.export_onnx(bert.source, tmp_path)
    assert seen == ["eager"]
    assert config._attn_implementation == original
    # The exporter restores train/eval on the root only; dropout must stay off inside.
    assert not any(sub.training for sub in model.modules())
    for a, b in zip(before, _eager(bert.source, sample), strict=True):
        np.testing.assert_array_equal(a, b)


def test_exported_bert_takes_any_sequence_length(bert: ContractModel, tmp_path: Path) -> None:
    from speedster_dist.testing.models import token_batch

    path = _onnx.export_onnx(bert.source, tmp_path)
    longer = tuple(token_batch(seq_len=40, seed=3)[name] for name in bert.source.input_names)
    for sample in [*bert.validation, longer]:  # lengths the exporter never saw
        for got, want in zip(
            _run(path, bert.source, sample), _eager(bert.source, sample), strict=True
        ):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=1e-4)


def test_dynamo_fallback_when_legacy_fails(
    mlp: ContractModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("legacy exporter broke")

    monkeypatch.setattr(onnx_export, "_export_legacy", broken)
    path = _onnx.export_onnx(mlp.source, tmp_path)
    sample = (torch.randn(5, 16),)  # a batch size the export never saw
    got = _run(path, mlp.source, sample)
    np.testing.assert_allclose(got[0], _eager(mlp.source, sample)[0], atol=1e-5)


def test_both_exporters_failing_is_unsupported(
    mlp: ContractModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("exporter broke\n" + "details " * 500)

    monkeypatch.setattr(onnx_export, "_export_legacy", broken)
    monkeypatch.setattr(onnx_export, "_export_dynamo", broken)
    with pytest.raises(UnsupportedCandidate, match=r"legacy exporter.*dynamo exporter") as info:
        _onnx.export_onnx(mlp.source, tmp_path)
    assert len(str(info.value)) < 1000


def test_large_models_get_one_external_data_file(
    mlp: ContractModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (onnx_export, onnx_files):  # every model counts as large
        monkeypatch.setattr(module, "EXTERNAL_DATA_BYTES", 0)
    path = _onnx.export_onnx(mlp.source, tmp_path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx", "model.onnx.data"]
    copied = _onnx.copy_onnx(path, tmp_path / "copy" / "model.onnx")
    assert (copied.parent / "model.onnx.data").exists()
    sample = mlp.validation[0]
    np.testing.assert_allclose(
        _run(copied, mlp.source, sample)[0], _eager(mlp.source, sample)[0], atol=1e-5
    )


# --------------------------------------------------------------------------- rewrites


def test_static_qdq_calibrates_on_varied_lengths(bert: ContractModel, tmp_path: Path) -> None:
    plain = _onnx.export_onnx(bert.source, tmp_path)
    out = _onnx.quantize_static_qdq(
        plain, bert.source.input_names, bert.calibration, tmp_path / "qdq.onnx"
    )
    ops = _op_types(out)
    assert ops["QuantizeLinear"] and ops["DequantizeLinear"]
    # Standard ONNX only: OpenVINO runs this file too.
    assert all(n.domain in ("", "ai.onnx") for n in onnx.load(str(out)).graph.node)
    assert not (tmp_path / "qdq.pre.onnx").exists(), "intermediate file left behind"
    sample = bert.validation[1]
    got, want = _run(out, bert.source, sample)[0], _eager(bert.source, sample)[0]
    cosine = float(got.ravel() @ want.ravel() / np.linalg.norm(got) / np.linalg.norm(want))
    assert cosine > 0.9


def test_static_qdq_needs_samples(mlp: ContractModel, tmp_path: Path) -> None:
    plain = _onnx.export_onnx(mlp.source, tmp_path)
    with pytest.raises(UnsupportedCandidate, match="calibration"):
        _onnx.quantize_static_qdq(plain, ["input"], [], tmp_path / "q.onnx")


def _quantize_inputs(path: Path, index: int) -> list[np.ndarray]:
    """Input ``index`` (1: scale, 2: zero point) of every QuantizeLinear of the graph."""
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n.input[index]] for n in model.graph.node if n.op_type == "QuantizeLinear"]


def _cosine_to_eager(path: Path, model: ContractModel) -> float:
    sample = model.validation[0]
    got, want = _run(path, model.source, sample)[0], _eager(model.source, sample)[0]
    assert np.isfinite(got).all()
    return float(got.ravel() @ want.ravel() / np.linalg.norm(got) / np.linalg.norm(want))


def test_symmetric_qdq_has_int8_zero_points_only(mlp: ContractModel, tmp_path: Path) -> None:
    plain = _onnx.export_onnx(mlp.source, tmp_path)
    asym = _onnx.quantize_static_qdq(plain, ["input"], mlp.calibration, tmp_path / "a.onnx")
    sym = _onnx.quantize_static_qdq(
        plain, ["input"], mlp.calibration, tmp_path / "s.onnx", symmetric=True
    )
    assert any(zp.dtype == np.uint8 for zp in _quantize_inputs(asym, 2))  # x86's u8 activations
    points = _quantize_inputs(sym, 2)
    assert points and all(zp.dtype == np.int8 and not zp.any() for zp in points)
    assert _cosine_to_eager(sym, mlp) > 0.9


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_histogram_calibration_methods(method: str, mlp: ContractModel, tmp_path: Path) -> None:
    plain = _onnx.export_onnx(mlp.source, tmp_path)
    varied = mlp.calibration  # batches of 1, 3, 2 and 4 rows
    with pytest.raises(UnsupportedCandidate, match="one shape; these have 4"):
        _onnx.quantize_static_qdq(plain, ["input"], varied, tmp_path / "v.onnx", method=method)
    generator = torch.Generator().manual_seed(0)
    uniform = [(torch.randn(4, 16, generator=generator) * 3,) for _ in range(4)]
    out = _onnx.quantize_static_qdq(plain, ["input"], uniform, tmp_path / "q.onnx", method=method)
    minmax = _onnx.quantize_static_qdq(plain, ["input"], uniform, tmp_path / "m.onnx")
    if method == "percentile":  # the 99.999th percentile clips the range min/max keeps
        pairs = zip(_quantize_inputs(out, 1), _quantize_inputs(minmax, 1), strict=True)
        assert any(not np.array_equal(a, b) for a, b in pairs)
    assert _cosine_to_eager(out, mlp) > 0.9


def test_unknown_calibration_method_is_unsupported(mlp: ContractModel, tmp_path: Path) -> None:
    plain = _onnx.export_onnx(mlp.source, tmp_path)
    with pytest.raises(UnsupportedCandidate, match=r"calibration method 'kl'.*minmax"):
        _onnx.quantize_static_qdq(
            plain, ["input"], mlp.calibration, tmp_path / "q.onnx", method="kl"
        )


def test_calibration_subset_is_spread_over_the_samples() -> None:
    samples = list(range(10))
    assert _onnx.pick_calibration(samples, 5) == [0, 2, 4, 6, 8]
    assert _onnx.pick_calibration(samples, 3) == [0, 3, 6]
    assert _onnx.pick_calibration(samples, 0) == samples  # 0: all of them
    assert _onnx.pick_calibration(samples, 50) == samples
    assert _onnx.pick_calibration([], 4) == []


def test_knobs_choose_the_calibration(
    mlp: ContractModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}

    def fake_quantize(path, names, samples, out, per_channel=False, *, method, symmetric):
        seen.update(count=len(samples), per_channel=per_channel, method=method, sym=symmetric)
        return out

    monkeypatch.setattr(onnx_quantize, "quantize_static_qdq", fake_quantize)
    many = [mlp.calibration[0]] * 40
    knobs = {"calibration_samples": 0, "calibration_method": "entropy", "per_channel": True}
    _onnx.quantize_static_with_knobs(tmp_path / "m.onnx", mlp.source, many, knobs, tmp_path / "q")
    assert seen == {"count": 40, "per_channel": True, "method": "entropy", "sym": False}
    _onnx.quantize_static_with_knobs(
        tmp_path / "m.onnx", mlp.source, many, {}, tmp_path / "q", symmetric=True
    )
    assert seen == {
        "count": _onnx.DEFAULT_CALIBRATION_SAMPLES,
        "per_channel": False,
        "method": "minmax",
        "sym": True,
    }
    _onnx.quantize_static_with_knobs(tmp_path / "m.onnx", mlp.source, [], {}, tmp_path / "q")
    assert seen["count"] == 1  # no held-in samples: the example input gives the ranges


def test_static_int8_knobs_apply_to_static_int8_only() -> None:
    from speedster_dist.records import DeviceKind, Precision

    knobs = _onnx.static_int8_knobs(frozenset({DeviceKind.CPU}))
    assert [k.name for k in knobs] == ["calibration_samples", "calibration_method"]
    for knob in knobs:
        assert knob.precisions == {Precision.INT8} and knob.techniques == {"static"}
    assert knobs[0].choices == (_onnx.DEFAULT_CALIBRATION_SAMPLES, 0)
    assert knobs[1].choices[0] == "minmax"


def test_dynamic_int8_on_a_fused_graph(bert: ContractModel, tmp_path: Path) -> None:
    plain = _onnx.export_onnx(bert.source, tmp_path)
    fused = _onnx.optimize_transformer(plain, tmp_path / "fused.onnx", bert.source.hf_config)
    assert fused is not None
    out = _onnx.quantize_dynamic_int8(fused, tmp_path / "dyn.onnx", per_channel=True)
    assert _op_types(out)["DynamicQuantizeLinear"]
    assert _run(out, bert.source, bert.validation[0])[0].shape == (1, 8, 32)


def test_transformer_optimizer_fuses_bert(bert: ContractModel, tmp_path: Path) -> None:
    plain = _onnx.export_onnx(bert.source, tmp_path)
    fused = _onnx.optimize_transformer(plain, tmp_path / "fused.onnx", bert.source.hf_config)
    assert fused is not None
    ops = _op_types(fused)
    assert ops["Attention"] == 2 and ops["SkipLayerNormalization"] == 4
    sample = bert.validation[0]
    for got, want in zip(
        _run(fused, bert.source, sample), _eager(bert.source, sample), strict=True
    ):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_fused_graph_of_a_cached_export_is_cached(
    bert: ContractModel, tmp_path: Path, _private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _onnx.export_onnx(bert.source, tmp_path / "w1")
    first = _onnx.optimize_transformer(plain, tmp_path / "f1.onnx", bert.source.hf_config)
    assert first == tmp_path / "f1.onnx"
    from onnxruntime.transformers import optimizer

    fusions: list[object] = []

    def no_fusion(*args: object, **kwargs: object) -> None:
        fusions.append(args)
        raise RuntimeError("the optimizer ran")

    monkeypatch.setattr(optimizer, "optimize_model", no_fusion)
    second = _onnx.optimize_transformer(plain, tmp_path / "f2.onnx", bert.source.hf_config)
    assert second is not None and second.is_relative_to(_private_cache / "fused")
    assert second.read_bytes() == first.read_bytes()
    assert not fusions and not (tmp_path / "f2.onnx").exists()
    # Its own entry: nothing is written beside the export, which other trials read.
    assert [p.name for p in plain.parent.iterdir()] == ["model.onnx"]
    assert entry_problem(plain.parent.parent) is None
    assert not [p for p in second.parent.parent.parent.iterdir() if p.name.startswith(".")]
    # A file outside the cache (a user's ONNX model) is fused every time, never cached.
    user_file = tmp_path / "user.onnx"
    user_file.write_bytes(plain.read_bytes())
    assert (
        _onnx.optimize_transformer(user_file, tmp_path / "f3.onnx", bert.source.hf_config) is None
    )
    assert len(fusions) == 1


def test_transformer_optimizer_on_a_static_shape_export(tmp_path: Path) -> None:
    # Its ORT pre-pass made this graph unloadable ("Attempt to replace the existing tensor").
    static = contract_model("bert", dynamic=False)
    plain = _onnx.export_onnx(static.source, tmp_path)
    fused = _onnx.optimize_transformer(plain, tmp_path / "fused.onnx", static.source.hf_config)
    assert fused is not None and _op_types(fused)["Attention"] == 2
    _session(fused)


@pytest.mark.parametrize("config", [None, {"model_type": "resnet"}, {}])
def test_transformer_optimizer_not_applicable(
    mlp: ContractModel, tmp_path: Path, config: dict[str, object] | None
) -> None:
    plain = _onnx.export_onnx(mlp.source, tmp_path)
    assert _onnx.optimize_transformer(plain, tmp_path / "fused.onnx", config) is None


def test_float16_keeps_float32_io(mlp: ContractModel, tmp_path: Path) -> None:
    plain = _onnx.export_onnx(mlp.source, tmp_path)
    half = _onnx.convert_float16(plain, tmp_path / "fp16.onnx")
    graph = onnx.load(str(half)).graph
    assert {t.data_type for t in graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    sample = mlp.validation[0]
    got = _run(half, mlp.source, sample)[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _eager(mlp.source, sample)[0], atol=1e-2)


def test_distinct_samples_are_counted_by_content() -> None:
    a = torch.arange(6).reshape(2, 3)
    samples = [(a, a.float()), (a.clone(), a.float()), (a, a.double()), (a.T.contiguous(), a)]
    # The same values as another dtype or shape are another sample.
    assert _onnx.distinct_samples(samples) == 3
    assert _onnx.distinct_samples([(a,)] * 100) == 1 and _onnx.distinct_samples([]) == 0
    varied = [(torch.full((1, 4), float(i)),) for i in range(_onnx.FEW_DISTINCT)]
    assert _onnx.calibration_note(varied) is None
    note = _onnx.calibration_note([(a,)] * 100)
    assert note is not None and "calibrated on 1 distinct sample(s) (of 100 held in)" in note
    assert f"{_onnx.FEW_DISTINCT} or more distinct" in note
