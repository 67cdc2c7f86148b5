"""``optimize_model`` for generation (issue 22): a causal LM or an encoder-decoder is searched
for ``generate()`` (whole greedy generations timed, candidates judged by greedy agreement and
the prefill's cosine), and its learner's ``generate()`` answers as Hugging Face's does, also
once saved and loaded (data only, no ``trust_code``)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from speedster_dist import load_model, optimize_model
from speedster_dist.errors import InputError
from speedster_dist.records import Precision, TrialStatus

from .helpers import TEXTS, TINY, SpyExecutor

NEW = 6


def _gpt2(vocab: int = 100, positions: int = 64) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=vocab, n_positions=positions)
    return GPT2LMHeadModel(config).eval()


def _t5() -> Any:
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


def _prompts(count: int = 5, length: int = 7, seed: int = 1) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(2, 100, (1, length), generator=gen)} for _ in range(count)]


def _hf(model: Any, ids: torch.Tensor, new: int = NEW) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
        )


def _optimize(model: Any, data: Any, executor: Any = None, **kwargs: Any) -> Any:
    kwargs.setdefault("max_new_tokens", NEW)
    # its compile takes seconds a trial; its own search is in tests/unit/backends/generate
    kwargs["ignore_compilers"] = [*kwargs.get("ignore_compilers", ()), "generate_torch_compile"]
    return optimize_model(
        model,
        data,
        executor=executor or SpyExecutor(),
        measure_settings=TINY,
        progress=False,
        device="cpu",
        confirm_rounds=0,
        verbose=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tmp_path_factory.mktemp("history")


@pytest.fixture(scope="module")
def gpt2_learner(history) -> tuple[Any, Any]:
    model = _gpt2()
    # no task: a causal LM generates by default
    return model, _optimize(model, _prompts(), history=history)


def test_the_history_records_generation_figures(gpt2_learner, history):
    from speedster_dist.results import read_history

    rows = read_history(history).to_pylist()
    # eager (default cache), eager static cache, ORT, OpenVINO (and the split, refused:
    # 7-token prompts)
    rows = [row for row in rows if row["status"] == "complete"]
    assert len(rows) == 4
    for row in rows:
        assert row["max_new_tokens"] == NEW and row["tokens_per_s"] > 0
        assert row["agreement"] == 1.0 and row["ttft_p50_s"] > 0
    from speedster_dist.results.report import render_report

    page = render_report(rows)
    assert "tokens/s" in page and "TTFT" in page  # the winners table's generation column


def test_gpt2_searched_for_generate_by_default(gpt2_learner):
    _, learner = gpt2_learner
    by_backend = {r.candidate.backend: r for r in learner.results}
    assert set(by_backend) == {
        "generate_torch",
        "generate_onnxruntime",
        "generate_openvino",
        "generate_split",
    }
    split = by_backend.pop("generate_split")  # refused at once: the prompts are too short
    assert split.status is TrialStatus.FAILED
    assert split.reason.startswith("unsupported: the prompts are at most 7 tokens")
    for result in (r for r in learner.results if r is not split):
        assert result.status is TrialStatus.COMPLETE, result.reason
        assert result.candidate.precision is Precision.FP32  # no drop accepted
        stats = result.generation
        assert stats is not None and stats.new_tokens == NEW
        assert stats.agreement == 1.0 and stats.cosine == pytest.approx(1.0, abs=1e-5)
        assert stats.tokens_per_s > 0 and stats.ttft_p50_s > 0 and stats.tpot_p99_s > 0
        assert stats.weight_mb > 0
        # 2 layers x 2 heads x 16 dims x (7 + 6) positions, keys and values, fp32
        assert stats.kv_cache_mb == pytest.approx(2 * 2 * 2 * 16 * 13 * 4 / 2**20)
    assert [r.is_baseline for r in learner.results].count(True) == 1
    techniques = {
        r.candidate.technique for r in learner.results if r.candidate.backend == "generate_torch"
    }
    assert techniques == {"", "static-cache"}  # HF's default cache and its static cache
    (base,) = (r for r in learner.results if r.is_baseline)
    assert (base.candidate.backend, base.candidate.technique) == ("generate_torch", "")
    assert learner.about["task"] == "text-generation"


def test_gpt2_learner_generate_equals_hugging_face(gpt2_learner):
    model, learner = gpt2_learner
    unseen = _prompts(1, length=9, seed=7)[0]
    assert torch.equal(
        learner.generate(**unseen, max_new_tokens=NEW), _hf(model, unseen["input_ids"])
    )
    longer = learner.generate(**unseen, max_new_tokens=NEW + 3, do_sample=False)
    assert torch.equal(longer, _hf(model, unseen["input_ids"], NEW + 3))
    logits = learner(**unseen, attention_mask=torch.ones_like(unseen["input_ids"]))
    with torch.no_grad():
        expected = model(**unseen).logits[:, -1, :]
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_gpt2_generation_learner_round_trip(gpt2_learner, tmp_path):
    model, learner = gpt2_learner
    unseen = _prompts(1, length=5, seed=9)[0]
    path = learner.save(tmp_path / "gpt2")
    loaded = load_model(path)  # data only: no trust_code
    assert torch.equal(
        loaded.generate(**unseen, max_new_tokens=NEW), _hf(model, unseen["input_ids"])
    )
    for entry in loaded.entries.values():  # the winner, whichever backend it is
        assert entry.backend.startswith("generate_")
        assert entry.metrics["agreement"] == 1.0
        assert entry.metrics["tokens_per_s"] > 0 and entry.metrics["max_new_tokens"] == NEW
    assert loaded.about["task"] == "text-generation"
    for row in ("tokens/s (batch 1, 6 new)", "time to first token", "greedy agreement"):
        assert row in learner.summary


def test_sampling_arguments_pass_through(gpt2_learner):
    _, learner = gpt2_learner
    ids = _prompts(1, seed=3)[0]["input_ids"]
    first = learner.generate(
        input_ids=ids,
        max_new_tokens=4,
        do_sample=True,
        top_k=5,
        generator=torch.Generator().manual_seed(0),
    )
    assert first.shape == (1, ids.shape[1] + 4)


@pytest.mark.slow  # a T5 past-key-value export and search: ~8 s on 2 cores
def test_t5_text2text_generation_onnxruntime():
    model = _t5()
    learner = _optimize(
        model, _prompts(), task="text2text-generation", ignore_compilers=["generate_openvino"]
    )
    winners = {r.candidate.backend for r in learner.results if r.ok}
    assert winners == {"generate_torch", "generate_onnxruntime"}
    ids = _prompts(1, seed=11)[0]["input_ids"]
    with torch.no_grad():
        expected = model.generate(input_ids=ids, max_new_tokens=NEW, do_sample=False)
    assert torch.equal(learner.generate(input_ids=ids, max_new_tokens=NEW), expected)


def test_strings_with_a_tokenizer():
    from speedster_dist.testing.models import minilm_tokenizer

    model = _gpt2(vocab=30522)
    learner = _optimize(
        model,
        TEXTS,
        tokenizer=minilm_tokenizer(),  # its token_type_ids are left out for generation
        ignore_compilers=["generate_openvino", "generate_onnxruntime"],
        max_new_tokens=3,
    )
    assert learner.results[0].generation is not None
    assert learner.results[0].generation.new_tokens == 3


def test_forward_pass_on_request_and_for_models_that_cannot_generate():
    from speedster_dist.generation import generation_task
    from speedster_dist.testing.models import tiny_bert

    assert generation_task(_gpt2(), "") == "text-generation"
    assert generation_task(_gpt2(), "forward") == ""
    assert generation_task(_t5(), "") == ""  # encoder-decoders keep their forward pass
    assert generation_task(tiny_bert(), "") == ""


@pytest.mark.parametrize(
    ("model", "data", "kwargs", "message"),
    [
        (_t5, _prompts(), {"task": "text-generation"}, "text2text-generation"),
        (_gpt2, _prompts(), {"task": "text2text-generation"}, "use task='text-generation'"),
        (_gpt2, _prompts(), {"task": "translation"}, "task must be one of"),
        (_gpt2, _prompts(), {"max_new_tokens": 0}, "max_new_tokens must be an integer >= 1"),
        (_gpt2, _prompts(), {"max_new_tokens": 60}, "exceeds the model's 64 positions"),
        (_gpt2, [{"input_ids": torch.full((1, 4), 100)}], {}, "outside the vocabulary"),
        (_gpt2, [{"input_ids": torch.rand(1, 4)}], {}, "2-D integer tensor"),
        (
            _gpt2,
            [
                {
                    "input_ids": torch.ones(1, 4, dtype=torch.long),
                    "token_type_ids": torch.zeros(1, 4, dtype=torch.long),
                }
            ],
            {},
            "return_token_type_ids",
        ),
        (_gpt2, ["a text"], {}, "no tokenizer was given"),
        (
            _gpt2,
            [
                {
                    "input_ids": torch.ones(2, 3, dtype=torch.long),
                    "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]]),
                }
            ],
            {},
            "must be left-padded",
        ),
        (_gpt2, _prompts(), {"objective": "throughput"}, "objective='latency' only"),
    ],
)
def test_bad_generation_inputs_refused_before_any_trial(model, data, kwargs, message):
    from speedster_dist.testing.models import tiny_bert

    spy = SpyExecutor()
    with pytest.raises(InputError, match=message):
        _optimize(model(), data, executor=spy, **kwargs)
    assert spy.calls == []
    with pytest.raises(InputError, match="needs a model that can generate"):
        _optimize(tiny_bert(), data, executor=spy, task="text-generation")


@pytest.mark.slow  # NNCF weight compression builds: 10-20 s on 2 cores
def test_weight_only_int8_and_int4_judged_by_agreement():
    model = _gpt2()
    learner = _optimize(
        model, _prompts(), metric_drop_ths=0.5, ignore_compilers=["generate_openvino"]
    )
    by_precision = {r.candidate.precision: r for r in learner.results}
    assert {Precision.INT8, Precision.INT4} <= set(by_precision)
    for precision in (Precision.INT8, Precision.INT4):
        result = by_precision[precision]
        assert result.candidate.technique == "weight-only-matmulnbits"
        assert result.metric_drop is not None and result.metric_drop <= 0.5
        assert result.status is TrialStatus.COMPLETE, result.reason
        stats = result.generation
        assert stats is not None
        assert result.metric_drop == pytest.approx(max(1 - stats.agreement, 1 - stats.cosine))
    strict = _optimize(
        model, _prompts(), metric_drop_ths=1e-9, ignore_compilers=["generate_openvino"]
    )  # weight-only int4 on random weights cannot match every logit that closely
    int4 = next(r for r in strict.results if r.candidate.precision is Precision.INT4)
    assert int4.status is TrialStatus.REJECTED and "greedy agreement" in int4.reason


def test_recorded_settings_rebuild_the_generation_payload():
    """What the nightly rebench re-measures from a kit's recorded settings."""
    from speedster_dist.generation import recorded_payload

    model = _gpt2()
    recorded = {"metric_drop_ths": None, "task": None, "max_new_tokens": 4}
    payload, options, batch = recorded_payload(model, _prompts(), recorded)
    assert payload.source.task == "text-generation" and payload.source.max_new_tokens == 4
    assert payload.reference_tokens is not None and options.metric_name == "agreement"
    assert batch == 1
    # a kit recorded before generation existed: the forward pass it searched
    payload, options, _ = recorded_payload(model, _prompts(), {"metric_drop_ths": None})
    assert payload.source.task == "" and payload.reference_tokens is None


@pytest.mark.gpu
def test_gpt2_generation_on_a_gpu():
    """The GPU candidates (HF generate() with its default and static caches, the decode step
    compiled with CUDA graphs, ONNX Runtime's CUDA provider with the cache kept on the
    device) agree with the original and the learner
    generates as HF does."""
    model = _gpt2()
    learner = optimize_model(
        model,
        _prompts(),
        executor=SpyExecutor(),
        measure_settings=TINY,
        progress=False,
        device="gpu",
        confirm_rounds=0,
        verbose=False,
        max_new_tokens=NEW,
    )
    complete = {r.candidate.label for r in learner.results if r.ok}
    assert "generate_torch fp32" in complete
    assert any(label.startswith("generate_torch_compile fp32") for label in complete)
    ids = _prompts(1, seed=5)[0]["input_ids"]
    assert torch.equal(learner.generate(input_ids=ids, max_new_tokens=NEW), _hf(model, ids))


def test_long_prompts_search_a_prefill_decode_split_that_saves_and_loads_as_data(tmp_path):
    """With prompts of 128 tokens or more the split is a complete candidate, guarded as any;
    whichever backend won, a split winner's nested files (``prefill/``, ``decode/``) go
    through the signed artifact and load without ``trust_code``."""
    import dataclasses

    from speedster_dist.backends import get_backend
    from speedster_dist.backends._protocol import BuildConfig, SourceModel
    from speedster_dist.records import DeviceKind
    from speedster_dist.runtime._trial import save_compiled

    model = _gpt2(positions=192)
    prompts = _prompts(length=130)
    learner = _optimize(model, prompts)
    split = next(r for r in learner.results if r.candidate.backend == "generate_split")
    assert split.status is TrialStatus.COMPLETE, split.reason
    assert split.candidate.knob_dict == {"phases": "openvino>onnxruntime"}
    assert split.generation is not None and split.generation.agreement == 1.0
    ids = prompts[0]["input_ids"]
    source = SourceModel(
        ("input_ids", "attention_mask"),
        ("logits",),
        (ids, torch.ones_like(ids)),
        module=model,
        task="text-generation",
        max_new_tokens=NEW,
    )
    config = BuildConfig(Precision.FP32, DeviceKind.CPU, split.candidate.technique, {})
    compiled = get_backend("generate_split").build(source, [], config, tmp_path / "build")
    (tmp_path / "work").mkdir()
    saved = save_compiled(compiled, "generate_split", DeviceKind.CPU, tmp_path / "work")
    assert {"split.json", "prefill/decoder.xml", "decode/decoder.onnx"} <= set(saved.files)
    (key, entry), *_ = learner.entries.items()
    entry = dataclasses.replace(
        entry,
        backend="generate_split",
        technique=split.candidate.technique,
        knobs=split.candidate.knob_dict,
        saved=saved,
    )
    with_split = dataclasses.replace(learner, entries={key: entry}, data_only={}, _active={})
    loaded = load_model(with_split.save(tmp_path / "gpt2-split"))  # data only: no trust_code
    assert loaded.entries[key].backend == "generate_split"
    unseen = _prompts(1, length=140, seed=7)[0]
    assert torch.equal(
        loaded.generate(**unseen, max_new_tokens=NEW), _hf(model, unseen["input_ids"])
    )
