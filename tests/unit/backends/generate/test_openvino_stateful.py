from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from speedster_dist.backends.generate.openvino_stateful import (
    META_NAME,
    OvGenerateSettings,
    OvSeq2SeqGenerator,
    build_ov_generator,
    load_ov_generator,
)

from .conftest import agreement, hf_greedy, hf_seq2seq


def test_fp32_stateful_greedy_matches_hf(
    tiny_gpt2: torch.nn.Module, prompt: torch.Tensor, tmp_path: Path
) -> None:
    generator = build_ov_generator(tiny_gpt2, tmp_path)
    assert [port.get_any_name() for port in generator.model.inputs] == [
        "input_ids",
        "attention_mask",
        "position_ids",
    ]
    assert len(generator.request.query_state()) == 4  # 2 layers x key/value
    ref = hf_greedy(tiny_gpt2, prompt, 20)
    for _ in range(2):  # a second call starts from an empty cache
        ours = generator.generate(prompt, torch.ones_like(prompt), max_new_tokens=20)
        assert ours.shape == ref.shape and agreement(ours, ref, 8) == 1.0


def test_left_padded_batch(tiny_gpt2: torch.nn.Module, tmp_path: Path) -> None:
    generator = build_ov_generator(tiny_gpt2, tmp_path)
    ids = torch.tensor([[0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    assert (
        agreement(
            generator.generate(ids, mask, max_new_tokens=10), hf_greedy(tiny_gpt2, ids, 10, mask), 6
        )
        == 1.0
    )


@pytest.mark.parametrize(("precision", "floor"), [("int8", 0.9), ("int4", 0.5), ("bf16", 0.5)])
def test_compressed_precisions(
    tiny_gpt2: torch.nn.Module, prompt: torch.Tensor, tmp_path: Path, precision: str, floor: float
) -> None:
    generator = build_ov_generator(
        tiny_gpt2, tmp_path, OvGenerateSettings(precision=precision, group_size=16)
    )
    if precision != "bf16":
        ops = [op for op in generator.model.get_ops() if op.get_type_name() == "Constant"]
        kinds = {op.get_output_element_type(0).get_type_name() for op in ops}
        assert {"int8": "u8", "int4": "i4"}[precision] in kinds
    ours = generator.generate(prompt, max_new_tokens=20)
    assert agreement(ours, hf_greedy(tiny_gpt2, prompt, 20), 8) >= floor


def test_save_and_load_data_only(
    tiny_gpt2: torch.nn.Module, prompt: torch.Tensor, tmp_path: Path
) -> None:
    generator = build_ov_generator(tiny_gpt2, tmp_path / "build", OvGenerateSettings(threads=1))
    saved = generator.save(tmp_path / "saved")
    assert sorted(p.name for p in saved.iterdir()) == ["decoder.bin", "decoder.xml", META_NAME]
    loaded = load_ov_generator(saved)
    assert loaded.settings == OvGenerateSettings(threads=1)
    assert torch.equal(
        loaded.generate(prompt, max_new_tokens=12), generator.generate(prompt, max_new_tokens=12)
    )
    meta = json.loads((saved / META_NAME).read_text())
    meta["loader"] = "pickle"
    (saved / META_NAME).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="allowlist"):
        load_ov_generator(saved)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_t5_encoder_once_stateful_decoder(
    tiny_t5: torch.nn.Module, tmp_path: Path, precision: str
) -> None:
    generator = build_ov_generator(
        tiny_t5, tmp_path / "build", OvGenerateSettings(precision=precision)
    )
    assert isinstance(generator, OvSeq2SeqGenerator)
    ids = torch.randint(2, 100, (1, 9), generator=torch.Generator().manual_seed(4))
    ours = generator.generate(ids, max_new_tokens=15)
    ref = hf_seq2seq(tiny_t5, ids, 15)
    assert agreement(ours, ref, 1) >= (1.0 if precision == "fp32" else 0.8)
    if precision == "fp32":
        assert torch.equal(ours, ref)
        loaded = load_ov_generator(generator.save(tmp_path / "saved"))
        assert isinstance(loaded, OvSeq2SeqGenerator)
        assert torch.equal(loaded.generate(ids, max_new_tokens=15), ref)
