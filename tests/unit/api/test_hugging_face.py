"""``optimize_model`` on Hugging Face models (encoder-only, decoder-only, encoder-decoder) in
every input form of the user guide: the learner is called like the model, returns the same
output class and values, and answers the same once saved and loaded."""

from __future__ import annotations

import pytest
import torch

from speedster_dist import optimize_model
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.runtime import InlineExecutor, backend_catalog
from speedster_dist.testing.models import tiny_albert, tiny_bert, tiny_gpt2, tiny_t5, token_batch

from .helpers import (
    TEXTS,
    TINY,
    TOL,
    UNSEEN,
    assert_fp32_only,
    assert_hf_close,
    assert_round_trip,
    baseline,
    eager,
    optimize,
    p50,
    winner_entry,
)

# -- Hugging Face: encoder-only --------------------------------------------------------------------


@pytest.mark.slow
def test_bert_dicts_with_every_default_backend(tokenizer, tmp_path):
    model = tiny_bert()
    data = [tokenizer(text, return_tensors="pt") for text in TEXTS]
    learner = optimize_model(
        model, data, executor=InlineExecutor(), measure_settings=TINY, progress=False, device="cpu"
    )
    baseline(learner)
    # Every backend that can take a torch model on a CPU at fp32 was tried, and nothing else
    # (metric_drop_ths defaults to None: no precision reduction).
    expected = {
        info.name
        for info in backend_catalog(DeviceKind.CPU)
        if info.unavailable is None
        and any(
            c.device == "cpu" and c.precision is Precision.FP32 and "torch" in c.sources
            for c in info.capabilities
        )
    }
    assert {"torch", "torchscript", "torch_compile"} <= expected
    assert {r.candidate.backend for r in learner.results} == expected
    assert_fp32_only(learner)
    assert all(r.reason for r in learner.results if not r.ok)
    # The winner is the fastest candidate that completed.
    completed = [r for r in learner.results if r.ok]
    fastest = min(completed, key=p50)
    winner = winner_entry(learner)
    assert (winner.backend, winner.precision) == (fastest.candidate.backend, "fp32")
    assert winner.metrics["latency_p50_s"] == p50(fastest)
    assert "Hardware type" in learner.summary and "latency (p50 per batch)" in learner.summary

    unseen = dict(tokenizer(UNSEEN, return_tensors="pt"))
    out = learner(**unseen)
    from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

    keys = ("last_hidden_state", "pooler_output")
    cls = BaseModelOutputWithPoolingAndCrossAttentions
    assert_hf_close(out, eager(model, **unseen), keys, cls)
    assert_round_trip(learner, tmp_path, lambda lrn: lrn(**unseen))


def test_bert_dicts_fast_backends(tokenizer, tmp_path):
    model = tiny_bert()
    data = [dict(token_batch(seq_len=n, seed=n)) for n in (6, 9, 12, 7, 10)]
    learner = optimize(model, data)
    baseline(learner)
    assert {r.candidate.backend for r in learner.results} == {"torch", "torchscript"}
    assert all(r.ok for r in learner.results), [r.reason for r in learner.results]
    from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

    for call_data in (data[0], token_batch(seq_len=15, batch=2, seed=99)):
        out = learner(**call_data)
        assert_hf_close(
            out,
            eager(model, **call_data),
            ("last_hidden_state", "pooler_output"),
            BaseModelOutputWithPoolingAndCrossAttentions,
        )
    assert tuple(out.last_hidden_state.shape) == (2, 15, 32)
    assert_round_trip(learner, tmp_path, lambda lrn: lrn(**data[1]))


@pytest.mark.slow  # a search and a save/load round trip of ALBERT: 10-20 s on 2 cores
def test_albert_tokenizer_dicts(tokenizer, tmp_path):
    """The guide's Case 1: the same tokenizer dict repeated."""
    model = tiny_albert()
    input_dict = tokenizer(
        "This is an example text for the huggingface model.", return_tensors="pt"
    )
    learner = optimize(model, [input_dict for _ in range(10)])
    baseline(learner)
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    out = learner(**input_dict)
    assert_hf_close(
        out,
        eager(model, **input_dict),
        ("last_hidden_state", "pooler_output"),
        BaseModelOutputWithPooling,
    )
    assert tuple(out.last_hidden_state.shape) == (1, int(input_dict["input_ids"].shape[1]), 32)
    assert_round_trip(learner, tmp_path, lambda lrn: lrn(**input_dict))


@pytest.mark.parametrize(
    "make_model",
    [pytest.param(tiny_albert, marks=pytest.mark.slow), tiny_bert],  # albert: ~10 s
    ids=["albert", "bert"],
)
def test_strings_with_tokenizer_and_tokenizer_args(tokenizer, tmp_path, make_model):
    """The guide's Case 2: raw strings, the tokenizer and its arguments."""
    model = make_model()
    tokenizer_args = {"return_tensors": "pt", "padding": "longest", "truncation": True}
    learner = optimize(model, TEXTS, tokenizer=tokenizer, tokenizer_args=tokenizer_args)
    baseline(learner)
    assert learner.io.input_names == ("input_ids", "token_type_ids", "attention_mask")
    assert learner.io.keyword
    unseen = dict(tokenizer(UNSEEN, return_tensors="pt"))
    expected = eager(model, **unseen)
    out = learner(**unseen)
    assert_hf_close(out, expected, ("last_hidden_state", "pooler_output"), type(expected))
    assert_round_trip(learner, tmp_path, lambda lrn: lrn(**unseen))


def test_strings_batched_with_batch_size(tokenizer):
    model = tiny_bert()
    learner = optimize(model, TEXTS, tokenizer=tokenizer, batch_size=2)
    baseline(learner)
    batch = dict(tokenizer(TEXTS[:2], return_tensors="pt", padding=True))
    out = learner(**batch)
    expected = eager(model, **batch)
    torch.testing.assert_close(out.last_hidden_state, expected.last_hidden_state, **TOL)
    # The summary's throughput is per sample: batches of 2 (of the confirmed baseline figure,
    # the baseline re-timed next to the winner after the search).
    (winner,) = learner.entries.values()
    assert f"{2 / winner.metrics['confirmed_baseline_p50_s']:.1f}" in learner.summary


# -- Hugging Face: decoder-only and encoder-decoder ------------------------------------------------


@pytest.mark.slow  # a forward-task search and round trip of GPT-2: ~10 s on 2 cores
def test_gpt2_lm_head_with_dicts(tokenizer, tmp_path):
    from transformers import GPT2LMHeadModel
    from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions

    model = tiny_gpt2()
    assert isinstance(model, GPT2LMHeadModel)
    data = [dict(tokenizer(text, return_tensors="pt")) for text in TEXTS]
    # A causal LM is optimized for generate() by default; its forward pass on request.
    learner = optimize(model, data, task="forward")
    baseline(learner)
    unseen = dict(tokenizer(UNSEEN, return_tensors="pt"))
    expected = eager(model, **unseen)
    assert type(expected) is CausalLMOutputWithCrossAttentions
    out = learner(**unseen)
    assert_hf_close(out, expected, ("logits",), CausalLMOutputWithCrossAttentions)
    assert tuple(out.logits.shape) == (
        1,
        int(unseen["input_ids"].shape[1]),
        model.config.vocab_size,
    )
    assert_round_trip(learner, tmp_path, lambda lrn: lrn(**unseen))


def _t5_sample(tokenizer, question, answer="The answer is:"):
    input_dict = tokenizer(question, return_tensors="pt")
    input_dict["decoder_input_ids"] = tokenizer(answer, return_tensors="pt").input_ids
    return input_dict


@pytest.mark.slow  # an encoder-decoder through every fast backend: 10-20 s on 2 cores
def test_t5_dicts_with_decoder_input_ids(tokenizer, tmp_path):
    from transformers.modeling_outputs import Seq2SeqLMOutput

    model = tiny_t5()
    data = [_t5_sample(tokenizer, text) for text in TEXTS]
    learner = optimize(model, data)
    baseline(learner)
    assert learner.io.input_names[-1] == "decoder_input_ids"
    sample = dict(_t5_sample(tokenizer, "What's the meaning of life?", "It is forty two"))
    expected = eager(model, **sample)
    out = learner(**sample)
    assert_hf_close(out, expected, ("logits", "encoder_last_hidden_state"), Seq2SeqLMOutput)
    assert tuple(out.logits.shape) == (1, int(sample["decoder_input_ids"].shape[1]), 30522)
    assert_round_trip(learner, tmp_path, lambda lrn: lrn(**sample))
