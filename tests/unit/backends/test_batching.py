"""Which candidates take a batch as built, and building one per batch where they do not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speedster_dist.backends import (
    BuildConfig,
    SourceModel,
    UnsupportedCandidate,
    batch_axis_dynamic,
    builds_per_batch,
    get_backend,
    source_for_batch,
)
from speedster_dist.backends.openvino import OpenVinoCompiled
from speedster_dist.cache import CACHE_ENV
from speedster_dist.inputs import normalize_inputs
from speedster_dist.measure import tile_batch
from speedster_dist.modelio import make_source_model
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.testing import models

FP32 = BuildConfig(Precision.FP32, DeviceKind.CPU)


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> object:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("onnx-cache")))
        yield


def _source(model: torch.nn.Module, data: list) -> tuple[SourceModel, list]:
    samples = normalize_inputs(data, model)
    source, _ = make_source_model(model, samples.input_names, samples.samples, samples.keyword)
    return source, samples.samples


def _eager(source: SourceModel, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    assert source.module is not None
    with torch.inference_mode():
        return source.module(*batch)[0]


def test_openvino_fixed_to_the_samples_is_built_again_per_batch(tmp_path: Path):
    source, samples = _source(
        models.tiny_bert(), [models.token_batch(16, seed=i) for i in range(2)]
    )
    assert batch_axis_dynamic(source) and source.dynamic_by_default
    backend = get_backend("openvino")
    once = backend.build(source, [], FP32, tmp_path / "once")
    assert builds_per_batch(source, once)  # compiled for batch 1 x 16 tokens
    batch = tile_batch(samples, source.input_names, 4)
    per_batch = backend.build(source_for_batch(source, batch), [], FP32, tmp_path / "four")
    assert isinstance(per_batch, OpenVinoCompiled)
    assert set(per_batch.fixed_shapes.values()) == {(4, 16)}
    out = per_batch(*batch)[0]
    assert out.shape[0] == 4 and torch.allclose(out, _eager(source, batch), atol=1e-4)


def test_onnxruntime_takes_any_batch_as_built(tmp_path: Path):
    source, samples = _source(
        models.tiny_bert(), [models.token_batch(16, seed=i) for i in range(2)]
    )
    compiled = get_backend("onnxruntime").build(source, [], FP32, tmp_path)
    assert not builds_per_batch(source, compiled)
    batch = tile_batch(samples, source.input_names, 5)
    assert torch.allclose(compiled(*batch)[0], _eager(source, batch), atol=1e-4)


def test_a_model_with_static_axes_is_exported_for_the_batch(tmp_path: Path):
    data = [
        ((torch.randn(1, 16, generator=torch.Generator().manual_seed(i)),), 0) for i in range(3)
    ]
    source, samples = _source(models.tiny_mlp(), data)
    assert not batch_axis_dynamic(source)  # every sample has batch 1: nothing varies
    batch = tile_batch(samples, source.input_names, 3)
    compiled = get_backend("onnxruntime").build(source_for_batch(source, batch), [], FP32, tmp_path)
    assert torch.allclose(compiled(*batch)[0], _eager(source, batch), atol=1e-5)


def test_an_onnx_file_with_a_fixed_batch_says_it_cannot(tmp_path: Path):
    path = tmp_path / "static.onnx"
    example = (torch.randn(1, 16),)
    torch.onnx.export(models.tiny_mlp(), example, str(path), input_names=["x"], dynamo=False)
    source = SourceModel(("x",), ("y",), example, onnx_path=path)
    assert source_for_batch(source, example).example_inputs == example  # its own size: fine
    with pytest.raises(UnsupportedCandidate, match="fixes the batch axis of input 'x' at 1"):
        source_for_batch(source, (torch.randn(4, 16),))


@pytest.mark.slow  # an NNCF quantization
def test_openvino_nncf_int8_is_built_for_a_batch_calibrated_on_single_requests(tmp_path: Path):
    pytest.importorskip("nncf")
    source, samples = _source(
        models.tiny_bert(), [models.token_batch(16, seed=i) for i in range(4)]
    )
    batch = tile_batch(samples, source.input_names, 4)
    config = BuildConfig(Precision.INT8, DeviceKind.CPU, "nncf", {"fp_layers": 1})
    # NNCF calibrates on the held-in samples (one request each): the build for a batch of
    # four quantizes before it fixes the shapes to the batch.
    per_batch = get_backend("openvino").build(
        source_for_batch(source, batch), samples, config, tmp_path
    )
    assert isinstance(per_batch, OpenVinoCompiled)
    assert set(per_batch.fixed_shapes.values()) == {(4, 16)}
    assert "i8" in per_batch.runtime_precisions() and len(per_batch.float_layers) == 1
    out = per_batch(*batch)[0]
    reference = _eager(source, batch)
    assert out.shape == reference.shape
    cosine = torch.nn.functional.cosine_similarity(out.flatten(1), reference.flatten(1))
    assert float(cosine.min()) > 0.9
