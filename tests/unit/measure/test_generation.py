"""Generation measures: greedy agreement of token sequences, TTFT / TPOT / tokens per second
read from the ``on_token`` observer on a virtual clock, and the KV cache's size."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from speedster_dist.measure import (
    TOKEN_TIMED_RUNS,
    MeasureSettings,
    generation_timings,
    kv_cache_mb,
    sequence_agreement,
)


def test_agreement_counts_positions_after_the_prompt():
    reference = torch.tensor([[5, 6, 1, 2, 3, 4]])
    assert sequence_agreement(reference, reference, 2, 4) == 1.0
    assert sequence_agreement(reference, torch.tensor([[5, 6, 1, 9, 3, 9]]), 2, 4) == 0.5
    # a generation that stopped early: the tokens it lacks count as different
    assert sequence_agreement(reference, torch.tensor([[5, 6, 1, 2]]), 2, 4) == 0.5
    # the prompt never counts, even when it differs
    assert sequence_agreement(reference, torch.tensor([[0, 0, 1, 2, 3, 4]]), 2, 4) == 1.0


def test_timings_on_a_virtual_clock():
    now = [0.0]

    def clock() -> float:
        return now[0]

    def generate(on_token):  # prefill 10 ms, then 2 ms a token; 4 tokens
        for step in range(4):
            now[0] += 0.010 if step == 0 else 0.002
            on_token(torch.tensor([step]), None)
        now[0] += 0.001  # the loop's end after the last token

    ttft, tpot50, tpot99, rate = generation_timings(generate, 4, MeasureSettings(), clock)
    assert ttft == pytest.approx(0.010)
    assert tpot50 == pytest.approx(0.002) and tpot99 == pytest.approx(0.002)
    assert rate == pytest.approx(4 / 0.017)
    assert TOKEN_TIMED_RUNS >= 3


def test_kv_cache_size_from_configs():
    gpt2 = SimpleNamespace(n_layer=12, n_head=12, n_embd=768)
    # 2 (keys, values) x 12 layers x 12 heads x 64 dims x 96 positions x 4 bytes
    assert kv_cache_mb(gpt2, 96) == pytest.approx(2 * 12 * 12 * 64 * 96 * 4 / 2**20)
    t5 = SimpleNamespace(num_decoder_layers=6, num_heads=8, d_kv=64, d_model=512)
    assert kv_cache_mb(t5, 65, batch=2) == pytest.approx(2 * 6 * 8 * 64 * 65 * 2 * 4 / 2**20)
    grouped = SimpleNamespace(num_hidden_layers=2, num_key_value_heads=2, num_attention_heads=8,
                              hidden_size=256)  # fmt: skip
    assert kv_cache_mb(grouped, 10) == pytest.approx(2 * 2 * 2 * 32 * 10 * 4 / 2**20)
    assert kv_cache_mb(SimpleNamespace(), 10) == 0.0
