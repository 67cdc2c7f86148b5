"""Tiny GPT-2 (random weights from a config) and the reference HF generate()."""

from __future__ import annotations

from typing import Any

import pytest
import torch


@pytest.fixture(scope="module")
def tiny_gpt2() -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    # vocab 100 keeps GPT-2's EOS 50256 outside the vocabulary (the loop must ignore it)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=128)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def prompt() -> torch.Tensor:
    return torch.randint(0, 100, (1, 8), generator=torch.Generator().manual_seed(1))


def hf_greedy(
    model: Any, ids: torch.Tensor, new: int, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Hugging Face greedy generate() (the reference)."""
    mask = torch.ones_like(ids) if mask is None else mask
    with torch.no_grad():
        return model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=False, pad_token_id=0
        )


def agreement(a: torch.Tensor, b: torch.Tensor, prompt_len: int) -> float:
    """Fraction of generated tokens identical at the same position."""
    left, right = a[:, prompt_len:], b[:, prompt_len:]
    length = min(left.shape[1], right.shape[1])
    return float((left[:, :length] == right[:, :length]).float().mean())


@pytest.fixture(scope="module")
def tiny_t5() -> Any:
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=100,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
    )
    config.decoder_start_token_id = 0
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():  # the default init makes every greedy token 0; spread the weights
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    return model


def hf_seq2seq(model: Any, ids: torch.Tensor, new: int) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False
        )
