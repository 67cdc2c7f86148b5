from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from speedster_dist.backends.generate._nbits import gemm_to_matmul
from speedster_dist.backends.generate.onnxruntime_past import (
    META_NAME,
    OrtGenerateSettings,
    OrtPastGenerator,
    OrtSeq2SeqGenerator,
    build_ort_generator,
    load_ort_generator,
    save_ort_generator,
)

from .conftest import agreement, hf_greedy, hf_seq2seq


def test_fp32_greedy_matches_hf_generate(
    tiny_gpt2: torch.nn.Module, prompt: torch.Tensor, tmp_path: Path
) -> None:
    generator = build_ort_generator(tiny_gpt2, tmp_path)
    ours = generator.generate(prompt, torch.ones_like(prompt), max_new_tokens=20)
    ref = hf_greedy(tiny_gpt2, prompt, 20)
    assert ours.shape == ref.shape == (1, 28)
    assert agreement(ours, ref, 8) == 1.0
    assert torch.equal(ours[:, :8], prompt)


@pytest.mark.parametrize(("precision", "floor"), [("int8", 0.9), ("int4", 0.5)])
def test_weight_only_agreement(
    tiny_gpt2: torch.nn.Module, prompt: torch.Tensor, tmp_path: Path, precision: str, floor: float
) -> None:
    generator = build_ort_generator(
        tiny_gpt2, tmp_path, OrtGenerateSettings(precision=precision, block_size=16)
    )
    assert isinstance(generator, OrtPastGenerator)
    graph = onnx.load(str(generator.graph.path))
    assert any(node.op_type == "MatMulNBits" for node in graph.graph.node)
    ours = generator.generate(prompt, max_new_tokens=20)
    assert agreement(ours, hf_greedy(tiny_gpt2, prompt, 20), 8) >= floor


def test_gemm_rewrite_keeps_the_numbers(tiny_gpt2: torch.nn.Module, tmp_path: Path) -> None:
    import onnxruntime as ort

    generator = build_ort_generator(tiny_gpt2, tmp_path)
    assert isinstance(generator, OrtPastGenerator)
    model = onnx.load(str(generator.graph.path))
    assert gemm_to_matmul(model) > 0
    assert not any(node.op_type == "Gemm" for node in model.graph.node)
    onnx.save(model, str(tmp_path / "rewritten.onnx"))
    feed = {"input_ids": np.array([[1, 2, 3]]), "attention_mask": np.ones((1, 3), np.int64)}
    feed["position_ids"] = np.arange(3)[None]
    feed.update({n: np.zeros((1, 2, 0, 16), np.float32) for n in generator.graph.past_names()})
    before = ort.InferenceSession(str(generator.graph.path)).run(["logits"], feed)[0]
    after = ort.InferenceSession(str(tmp_path / "rewritten.onnx")).run(["logits"], feed)[0]
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_sampling_is_seeded_and_unknown_arguments_fail(
    tiny_gpt2: torch.nn.Module, prompt: torch.Tensor, tmp_path: Path
) -> None:
    generator = build_ort_generator(tiny_gpt2, tmp_path)

    def sample(seed: int) -> torch.Tensor:
        rng = torch.Generator().manual_seed(seed)
        return generator.generate(
            prompt,
            max_new_tokens=10,
            do_sample=True,
            temperature=0.8,
            top_k=20,
            top_p=0.9,
            generator=rng,
        )

    assert torch.equal(sample(3), sample(3))
    assert sample(3).shape == (1, 18)
    with pytest.raises(ValueError, match="num_beams"):
        generator.generate(prompt, max_new_tokens=2, num_beams=4)


def test_left_padded_batch_matches_hf(tiny_gpt2: torch.nn.Module, tmp_path: Path) -> None:
    generator = build_ort_generator(tiny_gpt2, tmp_path)
    ids = torch.tensor([[0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    ours = generator.generate(ids, mask, max_new_tokens=10)
    assert agreement(ours, hf_greedy(tiny_gpt2, ids, 10, mask), 6) == 1.0


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_t5_encoder_once_decoder_with_past(
    tiny_t5: torch.nn.Module, tmp_path: Path, precision: str
) -> None:
    generator = build_ort_generator(
        tiny_t5, tmp_path, OrtGenerateSettings(precision=precision, block_size=16)
    )
    assert isinstance(generator, OrtSeq2SeqGenerator)
    ids = torch.randint(2, 100, (1, 9), generator=torch.Generator().manual_seed(4))
    ours = generator.generate(ids, max_new_tokens=15)
    ref = hf_seq2seq(tiny_t5, ids, 15)
    assert ours[0, 0] == ref[0, 0] == 0  # the decoder start token
    assert agreement(ours, ref, 1) >= (1.0 if precision == "fp32" else 0.8)
    if precision == "fp32":
        assert torch.equal(ours, ref)


@pytest.mark.gpu
def test_cuda_provider_keeps_the_cache_on_the_gpu(
    tiny_gpt2: torch.nn.Module, prompt: torch.Tensor, tmp_path: Path
) -> None:
    settings = OrtGenerateSettings(providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    generator = build_ort_generator(tiny_gpt2, tmp_path, settings)
    assert isinstance(generator, OrtPastGenerator)
    assert generator.session.get_providers()[0] == "CUDAExecutionProvider"
    ours = generator.generate(prompt, max_new_tokens=20)
    assert agreement(ours, hf_greedy(tiny_gpt2, prompt, 20), 8) == 1.0


def test_save_and_load_data_only(
    tiny_gpt2: torch.nn.Module, tiny_t5: torch.nn.Module, prompt: torch.Tensor, tmp_path: Path
) -> None:
    for name, model in (("gpt2", tiny_gpt2), ("t5", tiny_t5)):
        settings = OrtGenerateSettings(precision="int8", block_size=16, threads=1)
        generator = build_ort_generator(model, tmp_path / name / "build", settings)
        saved = save_ort_generator(generator, tmp_path / name / "saved")
        expected = ["decoder.onnx", META_NAME] + (["encoder.onnx"] if name == "t5" else [])
        assert sorted(p.name for p in saved.iterdir()) == sorted(expected)
        loaded = load_ort_generator(saved)
        assert loaded.settings == settings and type(loaded) is type(generator)
        ids = prompt + 2
        assert torch.equal(
            loaded.generate(ids, max_new_tokens=10), generator.generate(ids, max_new_tokens=10)
        )
    meta = json.loads((saved / META_NAME).read_text())
    meta["settings"]["loader"] = "pickle"
    (saved / META_NAME).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="allowlist"):
        load_ort_generator(saved)
