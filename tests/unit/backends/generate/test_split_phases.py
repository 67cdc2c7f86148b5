"""generate_split: the prefill on one backend, the decode on the other, one cache handed over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from speedster_dist.backends import UnsupportedCandidate, get_backend
from speedster_dist.backends._protocol import BuildConfig, SourceModel
from speedster_dist.backends.generate.onnxruntime_past import OrtPastGenerator
from speedster_dist.backends.generate.openvino_stateful import OvStatefulGenerator
from speedster_dist.backends.generate.split_phases import (
    META_NAME,
    PHASES,
    SPLIT,
    SplitGenerator,
    build_split,
    load_split,
    save_split,
)
from speedster_dist.records import DeviceKind, Precision

from .conftest import agreement, hf_greedy

LEFT_PADDED = (
    torch.tensor([[0, 0, 5, 6, 7, 8, 9], [9, 10, 11, 12, 13, 14, 15]]),
    torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]),
)


@pytest.fixture(scope="module", params=PHASES)
def fp32_split(request: Any, tiny_gpt2: torch.nn.Module, tmp_path_factory: Any) -> SplitGenerator:
    return build_split(tiny_gpt2, tmp_path_factory.mktemp("split"), request.param, "fp32")


def _count_steps(generator: Any) -> list[int]:
    """Wrap ``generator.step`` (an instance attribute now); the list holds its call count."""
    calls = [0]
    step = generator.step

    def counted(*args: Any) -> Any:
        calls[0] += 1
        return step(*args)

    generator.step = counted
    return calls


def test_each_direction_generates_what_hf_does_prefilling_once(
    fp32_split: SplitGenerator, tiny_gpt2: torch.nn.Module
) -> None:
    prefill, decode = fp32_split.prefill_generator, fp32_split.decode_generator
    expected = {"onnxruntime": OrtPastGenerator, "openvino": OvStatefulGenerator}
    assert isinstance(prefill, expected[fp32_split.names[0]])
    assert isinstance(decode, expected[fp32_split.names[1]])
    prefills, decodes = _count_steps(prefill), _count_steps(decode)
    ids, mask = LEFT_PADDED
    reference = hf_greedy(tiny_gpt2, ids, 12, mask)
    for _ in range(2):  # the second generation starts from an empty cache again
        ours = fp32_split.generate(ids, mask, max_new_tokens=12)
        assert torch.equal(ours, reference)
    assert prefills[0] == 2 and decodes[0] == 2 * 11  # one prefill, then 11 decode steps


def test_the_prefill_logits_are_the_first_steps(
    fp32_split: SplitGenerator, prompt: torch.Tensor, tiny_gpt2: torch.nn.Module
) -> None:
    with torch.no_grad():
        expected = tiny_gpt2(prompt).logits[:, -1, :]
    logits = fp32_split.prefill(prompt, torch.ones_like(prompt))
    assert logits.shape == (1, 100)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_sampling_draws_as_the_decode_backend_alone_does(
    fp32_split: SplitGenerator, prompt: torch.Tensor
) -> None:
    sampling = {"do_sample": True, "temperature": 0.8, "top_k": 20}
    split = fp32_split.generate(
        prompt, None, 15, generator=torch.Generator().manual_seed(3), **sampling
    )
    alone = fp32_split.decode_generator.generate(  # type: ignore[attr-defined]
        prompt, None, 15, generator=torch.Generator().manual_seed(3), **sampling
    )
    assert torch.equal(split, alone)
    with pytest.raises(ValueError, match="unsupported generation arguments"):
        fp32_split.generate(prompt, None, 4, num_beams=2)


def test_a_cache_moves_between_backends_unchanged(
    tiny_gpt2: torch.nn.Module, prompt: torch.Tensor, tmp_path: Path
) -> None:
    split = build_split(tiny_gpt2, tmp_path, PHASES[0], "fp32")
    ov, ort = split.prefill_generator, split.decode_generator
    mask = torch.ones_like(prompt)
    positions = torch.arange(prompt.shape[1])[None]
    for generator in (ov, ort):
        generator.begin(1)
        generator.step(prompt, mask, positions)
    from_ov, from_ort = ov.cache_arrays(), ort.cache_arrays()
    assert len(from_ov) == 4 and from_ov[0].shape == (1, 2, 8, 16)  # layers x key/value
    for a, b in zip(from_ov, from_ort, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    ov.take_cache(from_ort)  # OpenVINO continues from ONNX Runtime's cache
    token, longer = prompt[:, -1:], torch.ones(1, 9, dtype=torch.long)
    np.testing.assert_allclose(
        ov.step(token, longer, torch.tensor([[8]])).numpy(),
        ort.step(token, longer, torch.tensor([[8]])).numpy(),
        atol=1e-4,
    )
    with pytest.raises(ValueError, match="a cache of 3 tensors for 2 layers"):
        ort.take_cache(from_ov[:3])


@pytest.mark.parametrize("phases", PHASES)
@pytest.mark.parametrize(("precision", "floor"), [("int8", 0.9), ("int4", 0.5)])
def test_weight_only_precisions_run_one_set_of_weights_in_both_phases(
    tiny_gpt2: torch.nn.Module,
    prompt: torch.Tensor,
    tmp_path: Path,
    phases: str,
    precision: str,
    floor: float,
) -> None:
    split = build_split(tiny_gpt2, tmp_path, phases, precision)
    parts: list[Any] = [split.prefill_generator, split.decode_generator]
    ort, ov = parts if split.names[0] == "onnxruntime" else parts[::-1]
    # OpenVINO runs ONNX Runtime's MatMulNBits graph, not an NNCF compression of its own
    assert ov.graph.path == ort.graph.path and ort.graph.path.name.endswith(f"_{precision}.onnx")
    assert not any(op.get_type_name() == "MatMulNBits" for op in ov.model.get_ops())
    ours = split.generate(prompt, None, 20)
    assert agreement(ours, hf_greedy(tiny_gpt2, prompt, 20), 8) >= floor


def test_saved_as_data_and_loaded_back(
    tiny_gpt2: torch.nn.Module, prompt: torch.Tensor, tmp_path: Path
) -> None:
    split = build_split(tiny_gpt2, tmp_path / "build", PHASES[0], "fp32")
    saved = save_split(split, tmp_path / "saved")
    assert sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file()) == [
        "decode/decoder.onnx",
        "decode/generation.json",
        "prefill/decoder.bin",
        "prefill/decoder.xml",
        "prefill/generation.json",
        META_NAME,
    ]
    loaded = load_split(saved)
    assert loaded.names == ("openvino", "onnxruntime")
    assert torch.equal(loaded.generate(prompt, None, 12), split.generate(prompt, None, 12))
    meta = json.loads((saved / META_NAME).read_text())
    (saved / META_NAME).write_text(json.dumps({**meta, "loader": "pickle"}))
    with pytest.raises(ValueError, match="allowlist"):
        load_split(saved)
    (saved / META_NAME).write_text(json.dumps({"prefill": "tensorrt", "decode": "openvino"}))
    with pytest.raises(ValueError, match="phases must be one of"):
        load_split(saved)
    (saved / META_NAME).write_text(json.dumps({"prefill": "onnxruntime", "decode": "openvino"}))
    with pytest.raises(ValueError):  # each part must be the backend split.json names
        load_split(saved)
    (saved / META_NAME).write_text(json.dumps(meta))
    part_meta = json.loads((saved / "decode" / "generation.json").read_text())
    part_meta["num_layers"] = 3  # a decode graph the prefill's cache does not fit
    (saved / "decode" / "generation.json").write_text(json.dumps(part_meta))
    with pytest.raises(ValueError, match="different cache layouts"):
        load_split(saved)


def test_the_backend_declares_a_cpu_split_of_its_two_parts() -> None:
    backend = SPLIT
    assert get_backend("generate_split") is SPLIT
    assert {(c.device, c.precision) for c in backend.capabilities} == {
        (DeviceKind.CPU, Precision.FP32),
        (DeviceKind.CPU, Precision.INT8),
        (DeviceKind.CPU, Precision.INT4),
    }
    assert all(c.sources == frozenset({"generate"}) for c in backend.capabilities)
    assert [k.choices for k in backend.knobs] == [PHASES]
    assert backend.parts == ("generate_onnxruntime", "generate_openvino")
    assert not backend.saves_code and backend.unavailable_reason(DeviceKind.CPU) is None
    assert "CPU only" in str(backend.unavailable_reason(DeviceKind.GPU))


def test_an_encoder_decoder_model_has_no_prefill_to_move(
    tiny_t5: torch.nn.Module, tmp_path: Path
) -> None:
    ids = torch.ones(1, 4, dtype=torch.long)
    model = SourceModel(
        ("input_ids", "attention_mask"),
        ("logits",),
        (ids, ids),
        module=tiny_t5,
        task="text2text-generation",
        max_new_tokens=4,
    )
    config = BuildConfig(Precision.FP32, DeviceKind.CPU, "prefill-decode-split")
    with pytest.raises(UnsupportedCandidate, match="encoder-decoder"):
        get_backend("generate_split").build(model, [], config, tmp_path)


def test_short_prompts_are_refused_before_any_export(
    tiny_gpt2: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = SPLIT
    assert backend.min_prompt_tokens == 128
    monkeypatch.setattr(backend, "min_prompt_tokens", 40)  # the tiny model has 128 positions
    ids = torch.ones(1, 45, dtype=torch.long)
    full = torch.ones_like(ids)
    padded = torch.cat([torch.zeros(1, 10), torch.ones(1, 35)], -1).long()
    config = BuildConfig(Precision.FP32, DeviceKind.CPU, "prefill-decode-split")

    def source(mask: torch.Tensor) -> SourceModel:
        return SourceModel(
            ("input_ids", "attention_mask"),
            ("logits",),
            (ids, mask),
            module=tiny_gpt2,
            task="text-generation",
            max_new_tokens=4,
        )

    # 35 real tokens (left padding does not count), and no longer calibration prompt
    with pytest.raises(UnsupportedCandidate, match=r"at most 35 tokens.*from 40"):
        backend.build(source(padded), [(ids[:, :20], full[:, :20])], config, tmp_path)
    assert not any(tmp_path.iterdir())  # refused before the export
    built = backend.build(source(padded), [(ids, full)], config, tmp_path)  # one is long
    assert built.generate(ids, full, max_new_tokens=2).shape == (1, 47)
