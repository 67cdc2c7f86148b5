"""``optimize_model`` end to end, in-process: every input form of the user guide, the learner it
returns (called like the original model, same output class, same values, saved and loaded),
the validation of bad input (before any trial is scheduled) and the metric semantics."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import speedster_dist
import speedster_dist.api as api
from speedster_dist import LearnerMetadata, load_model, optimize_model
from speedster_dist.backends import backend_names, get_backend
from speedster_dist.backends._registry import EXTRA_BACKENDS_ENV
from speedster_dist.inputs import InputError
from speedster_dist.measure import MeasureSettings
from speedster_dist.records import DeviceKind, Precision, TrialResult, TrialStatus
from speedster_dist.runtime import InlineExecutor, backend_catalog
from speedster_dist.testing.fakes import FAKE_BACKENDS
from speedster_dist.testing.models import (
    minilm_tokenizer,
    tiny_albert,
    tiny_bert,
    tiny_gpt2,
    tiny_mlp,
    tiny_t5,
    token_batch,
)

TINY = MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=3, min_duration_s=0.0)
# The fake-backend tests compare latencies of a few ms: a median over 7 calls is robust to the
# odd slow first call.
STEADY = MeasureSettings(warmup_calls=2, warmup_s=0, min_calls=7, min_duration_s=0.0)
# Backends that are slow to build (seconds) on 2 cores: most tests leave them out.
SLOW_BACKENDS = ["onnxruntime", "openvino", "torch_compile"]
TEXTS = [
    "This is a test.",
    "Hi my name is John.",
    "The cat is on the table.",
    "Another sentence, a little longer than the others.",
    "Short one.",
]
UNSEEN = "A sentence that is longer than every sample the search was given, to check dynamic axes."
TOL: dict[str, Any] = {"rtol": 1e-4, "atol": 1e-4}


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """With an executor passed in, optimize_model must never connect to Ray."""

    def fail(*args, **kwargs):
        pytest.fail("optimize_model touched Ray although an executor was given")

    monkeypatch.setattr(api, "connect", fail)
    monkeypatch.setattr(api, "RayExecutor", fail)


class SpyExecutor(InlineExecutor):
    """An inline executor that records what the driver asked of it."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def discover(self):
        self.calls.append("discover")
        return super().discover()

    def prepare(self, payload):
        self.calls.append("prepare")
        super().prepare(payload)

    def submit(self, candidate, hardware, is_baseline, prune_above_s=None):
        self.calls.append(("submit", candidate.label))
        super().submit(candidate, hardware, is_baseline, prune_above_s)


def _optimize(model, input_data, executor=None, **kwargs):
    kwargs.setdefault("ignore_compilers", SLOW_BACKENDS)
    kwargs.setdefault("measure_settings", TINY)
    kwargs.setdefault("device", "cpu")  # one hardware type, also on a machine with a GPU
    return optimize_model(
        model, input_data, executor=executor or InlineExecutor(), progress=False, **kwargs
    )


def _baseline(learner, backend="torch", drop=0.0):
    baselines = [r for r in learner.results if r.is_baseline]
    assert len(baselines) == 1, learner.results
    base = baselines[0]
    assert base.status is TrialStatus.COMPLETE, base.reason
    assert base.candidate.backend == backend
    assert base.candidate.precision is Precision.FP32
    assert base.latency is not None and base.latency.count >= TINY.min_calls
    assert base.latency.p50 > 0
    if drop is not None:
        assert base.metric_drop == pytest.approx(drop, abs=1e-6)
    return base


def _p50(result: TrialResult) -> float:
    assert result.latency is not None, result  # a completed trial carries its latency
    return result.latency.p50


def _winner(learner):
    (entry,) = learner.entries.values()
    return entry


def _by_label(learner):
    return {r.candidate.label: r for r in learner.results}


def _eager(model, *args, **kwargs):
    with torch.no_grad():
        return model(*args, **kwargs)


def _assert_hf_close(out, expected, keys, cls):
    assert type(out) is cls
    assert tuple(out.keys()) == keys  # caches (past_key_values) are not outputs of the learner
    for key in keys:
        torch.testing.assert_close(out[key], expected[key], **TOL)


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        return
    assert type(a) is type(b)
    assert tuple(a.keys()) == tuple(b.keys())
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6)


def _assert_round_trip(learner, tmp_path, call):
    """Saved and loaded both ways (ours and Speedster's), the learner answers the same."""
    expected = call(learner)
    path = learner.save(tmp_path / "optimized")
    assert (path / "manifest.json").is_file()
    # The winners here are torch backends (TorchScript files): loading them needs the opt-in.
    for loaded in (
        load_model(path, trust_code=True),
        LearnerMetadata.read(path).load_model(path, trust_code=True),
    ):
        assert loaded.hardware_types() == learner.hardware_types()
        assert _winner(loaded).backend == _winner(learner).backend
        _assert_same(call(loaded), expected)
    return expected


def _assert_fp32_only(learner):
    assert {r.candidate.precision for r in learner.results} == {Precision.FP32}


# -- Hugging Face: encoder-only --------------------------------------------------------------------


@pytest.mark.slow
def test_bert_dicts_with_every_default_backend(tokenizer, tmp_path):
    model = tiny_bert()
    data = [tokenizer(text, return_tensors="pt") for text in TEXTS]
    learner = optimize_model(
        model, data, executor=InlineExecutor(), measure_settings=TINY, progress=False, device="cpu"
    )
    _baseline(learner)
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
    _assert_fp32_only(learner)
    assert all(r.reason for r in learner.results if not r.ok)
    # The winner is the fastest candidate that completed.
    completed = [r for r in learner.results if r.ok]
    fastest = min(completed, key=_p50)
    winner = _winner(learner)
    assert (winner.backend, winner.precision) == (fastest.candidate.backend, "fp32")
    assert winner.metrics["latency_p50_s"] == _p50(fastest)
    assert "Hardware type" in learner.summary and "latency (p50 per batch)" in learner.summary

    unseen = dict(tokenizer(UNSEEN, return_tensors="pt"))
    out = learner(**unseen)
    from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

    keys = ("last_hidden_state", "pooler_output")
    cls = BaseModelOutputWithPoolingAndCrossAttentions
    _assert_hf_close(out, _eager(model, **unseen), keys, cls)
    _assert_round_trip(learner, tmp_path, lambda lrn: lrn(**unseen))


def test_bert_dicts_fast_backends(tokenizer, tmp_path):
    model = tiny_bert()
    data = [dict(token_batch(seq_len=n, seed=n)) for n in (6, 9, 12, 7, 10)]
    learner = _optimize(model, data)
    _baseline(learner)
    assert {r.candidate.backend for r in learner.results} == {"torch", "torchscript"}
    assert all(r.ok for r in learner.results), [r.reason for r in learner.results]
    from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

    for call_data in (data[0], token_batch(seq_len=15, batch=2, seed=99)):
        out = learner(**call_data)
        _assert_hf_close(
            out,
            _eager(model, **call_data),
            ("last_hidden_state", "pooler_output"),
            BaseModelOutputWithPoolingAndCrossAttentions,
        )
    assert tuple(out.last_hidden_state.shape) == (2, 15, 32)
    _assert_round_trip(learner, tmp_path, lambda lrn: lrn(**data[1]))


def test_albert_tokenizer_dicts(tokenizer, tmp_path):
    """The guide's Case 1: the same tokenizer dict repeated."""
    model = tiny_albert()
    input_dict = tokenizer(
        "This is an example text for the huggingface model.", return_tensors="pt"
    )
    learner = _optimize(model, [input_dict for _ in range(10)])
    _baseline(learner)
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    out = learner(**input_dict)
    _assert_hf_close(
        out,
        _eager(model, **input_dict),
        ("last_hidden_state", "pooler_output"),
        BaseModelOutputWithPooling,
    )
    assert tuple(out.last_hidden_state.shape) == (1, int(input_dict["input_ids"].shape[1]), 32)
    _assert_round_trip(learner, tmp_path, lambda lrn: lrn(**input_dict))


@pytest.mark.parametrize("make_model", [tiny_albert, tiny_bert], ids=["albert", "bert"])
def test_strings_with_tokenizer_and_tokenizer_args(tokenizer, tmp_path, make_model):
    """The guide's Case 2: raw strings, the tokenizer and its arguments."""
    model = make_model()
    tokenizer_args = {"return_tensors": "pt", "padding": "longest", "truncation": True}
    learner = _optimize(model, TEXTS, tokenizer=tokenizer, tokenizer_args=tokenizer_args)
    _baseline(learner)
    assert learner.io.input_names == ("input_ids", "token_type_ids", "attention_mask")
    assert learner.io.keyword
    unseen = dict(tokenizer(UNSEEN, return_tensors="pt"))
    expected = _eager(model, **unseen)
    out = learner(**unseen)
    _assert_hf_close(out, expected, ("last_hidden_state", "pooler_output"), type(expected))
    _assert_round_trip(learner, tmp_path, lambda lrn: lrn(**unseen))


def test_strings_batched_with_batch_size(tokenizer):
    model = tiny_bert()
    learner = _optimize(model, TEXTS, tokenizer=tokenizer, batch_size=2)
    _baseline(learner)
    batch = dict(tokenizer(TEXTS[:2], return_tensors="pt", padding=True))
    out = learner(**batch)
    expected = _eager(model, **batch)
    torch.testing.assert_close(out.last_hidden_state, expected.last_hidden_state, **TOL)
    # The summary's throughput is per sample: batches of 2 (of the confirmed baseline figure,
    # the baseline re-timed next to the winner after the search).
    (winner,) = learner.entries.values()
    assert f"{2 / winner.metrics['confirmed_baseline_p50_s']:.1f}" in learner.summary


# -- Hugging Face: decoder-only and encoder-decoder ------------------------------------------------


def test_gpt2_lm_head_with_dicts(tokenizer, tmp_path):
    from transformers import GPT2LMHeadModel
    from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions

    model = tiny_gpt2()
    assert isinstance(model, GPT2LMHeadModel)
    data = [dict(tokenizer(text, return_tensors="pt")) for text in TEXTS]
    learner = _optimize(model, data)
    _baseline(learner)
    unseen = dict(tokenizer(UNSEEN, return_tensors="pt"))
    expected = _eager(model, **unseen)
    assert type(expected) is CausalLMOutputWithCrossAttentions
    out = learner(**unseen)
    _assert_hf_close(out, expected, ("logits",), CausalLMOutputWithCrossAttentions)
    assert tuple(out.logits.shape) == (
        1,
        int(unseen["input_ids"].shape[1]),
        model.config.vocab_size,
    )
    _assert_round_trip(learner, tmp_path, lambda lrn: lrn(**unseen))


def _t5_sample(tokenizer, question, answer="The answer is:"):
    input_dict = tokenizer(question, return_tensors="pt")
    input_dict["decoder_input_ids"] = tokenizer(answer, return_tensors="pt").input_ids
    return input_dict


def test_t5_dicts_with_decoder_input_ids(tokenizer, tmp_path):
    from transformers.modeling_outputs import Seq2SeqLMOutput

    model = tiny_t5()
    data = [_t5_sample(tokenizer, text) for text in TEXTS]
    learner = _optimize(model, data)
    _baseline(learner)
    assert learner.io.input_names[-1] == "decoder_input_ids"
    sample = dict(_t5_sample(tokenizer, "What's the meaning of life?", "It is forty two"))
    expected = _eager(model, **sample)
    out = learner(**sample)
    _assert_hf_close(out, expected, ("logits", "encoder_last_hidden_state"), Seq2SeqLMOutput)
    assert tuple(out.logits.shape) == (1, int(sample["decoder_input_ids"].shape[1]), 30522)
    _assert_round_trip(learner, tmp_path, lambda lrn: lrn(**sample))


# -- plain PyTorch ------------------------------------------------------------------------------


def test_plain_module_with_tuples_and_labels(tmp_path):
    model = tiny_mlp()
    torch.manual_seed(1)
    data = [((torch.randn(1, 16),), torch.tensor([i % 4])) for i in range(10)]
    learner = _optimize(model, data)
    _baseline(learner)
    assert learner.io.input_names == ("input",)
    assert learner.io.keyword is False
    x = torch.randn(1, 16)
    out = learner(x)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, _eager(model, x), **TOL)
    torch.testing.assert_close(learner(input=x), out)  # by name, like the original
    _assert_round_trip(learner, tmp_path, lambda lrn: lrn(x))


def test_plain_module_with_a_dataloader(tmp_path):
    model = tiny_mlp()
    torch.manual_seed(2)
    loader = DataLoader(
        TensorDataset(torch.randn(20, 16), torch.randint(0, 4, (20,))), batch_size=4
    )
    learner = _optimize(model, loader, metric="accuracy", metric_drop_ths=0)
    _baseline(learner)
    assert all(r.metric_drop == 0.0 for r in learner.results if r.ok)
    assert "Candidates judged by metric 'accuracy'" in learner.summary
    x = torch.randn(4, 16)
    torch.testing.assert_close(learner(x), _eager(model, x), **TOL)
    # Batches of 4: the summary reports samples per second (of the confirmed figure).
    (winner,) = learner.entries.values()
    assert f"{4 / winner.metrics['confirmed_baseline_p50_s']:.1f}" in learner.summary
    _assert_round_trip(learner, tmp_path, lambda lrn: lrn(x))


# -- ONNX files -----------------------------------------------------------------------------------


def _export(model, args, path, input_names, output_names=("y",)):
    torch.onnx.export(
        model,
        args,
        str(path),
        dynamo=False,
        input_names=list(input_names),
        output_names=list(output_names),
    )
    return path


def test_onnx_path(tmp_path):
    model = tiny_mlp()
    path = _export(model, (torch.randn(1, 16),), tmp_path / "mlp.onnx", ["x"])
    data = [((torch.randn(1, 16),), i % 4) for i in range(5)]
    learner = _optimize(str(path), data, ignore_compilers=["openvino"])
    _baseline(learner, backend="onnxruntime")
    assert {r.candidate.backend for r in learner.results} == {"onnxruntime"}
    assert learner.io.input_names == ("x",)
    x = torch.randn(1, 16)
    out = learner(x)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, _eager(model, x), **TOL)
    _assert_round_trip(learner, tmp_path, lambda lrn: lrn(x))


class _AffineTwo(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(4, 3))

    def forward(self, a, b):
        return a @ self.weight + b


def test_onnx_path_with_dicts_maps_values_by_name(tmp_path):
    """Dict keys in another order than the graph's inputs still reach the right input."""
    model = _AffineTwo().eval()
    path = _export(model, (torch.randn(1, 4), torch.randn(1, 3)), tmp_path / "two.onnx", ["a", "b"])
    data = [{"b": torch.randn(1, 3), "a": torch.randn(1, 4)} for _ in range(3)]
    learner = _optimize(path, data, ignore_compilers=["openvino"])
    _baseline(learner, backend="onnxruntime")
    assert learner.io.input_names == ("a", "b")
    a, b = torch.randn(1, 4), torch.randn(1, 3)
    torch.testing.assert_close(learner(b=b, a=a), _eager(model, a, b), **TOL)
    torch.testing.assert_close(learner(a, b), _eager(model, a, b), **TOL)


def test_onnx_path_with_dicts_of_other_names(tmp_path):
    path = _export(
        _AffineTwo().eval(),
        (torch.randn(1, 4), torch.randn(1, 3)),
        tmp_path / "two.onnx",
        ["a", "b"],
    )
    spy = SpyExecutor()
    with pytest.raises(InputError, match=r"takes inputs \['a', 'b'\].*keys \['a', 'c'\]"):
        _optimize(path, [{"a": torch.randn(1, 4), "c": torch.randn(1, 3)}], executor=spy)
    assert spy.calls == []


# -- bad input: a helpful error, and no trial ------------------------------------------------------


def _mlp_data(n=3):
    return [((torch.randn(1, 16),), i % 4) for i in range(n)]


class _Broken(torch.nn.Module):
    def forward(self, x):
        raise ValueError(f"expected 3 channels, got {x.shape[-1]}")


def _ranks():
    return [((torch.randn(1, 16),), 0), ((torch.randn(16),), 1)]


def _batches():
    return [((torch.randn(1, 16),), 0), ((torch.randn(2, 16),), 1)]


def _mlp(**kwargs):
    return lambda: {"model": tiny_mlp(), "input_data": _mlp_data(), **kwargs}


# case id -> (arguments of optimize_model, error type, pattern its message must match)
BAD_CASES = {
    "empty": (_mlp(input_data=[]), InputError, r"input_data is empty: pass"),
    "none": (_mlp(input_data=None), InputError, r"input_data is empty"),
    "strings-no-tokenizer": (
        lambda: {"model": tiny_bert(), "input_data": TEXTS},
        InputError,
        r"holds strings but no tokenizer was given: pass tokenizer=",
    ),
    "different-ranks": (
        lambda: {"model": tiny_mlp(), "input_data": _ranks()},
        InputError,
        r"'input' has shapes of different ranks across samples: \[\(1, 16\), \(16,\)\]"
        r".*one rank per input",
    ),
    "undeclared-dynamic-axis": (
        lambda: {
            "model": tiny_mlp(),
            "input_data": _batches(),
            "dynamic_info": {"inputs": [{}], "outputs": [{}]},
        },
        InputError,
        r"input 'input' varies along axes \[0\] across samples, but dynamic_info does not "
        r"declare them dynamic",
    ),
    "malformed-dynamic-info": (
        lambda: {
            "model": tiny_mlp(),
            "input_data": _batches(),
            "dynamic_info": {"axes": [{0: "batch"}]},
        },
        InputError,
        r"dynamic_info must be \{\"inputs\"",
    ),
    "optimization-time-word": (
        _mlp(optimization_time="fast"),
        InputError,
        r"invalid optimization_time 'fast': use 'constrained', 'unconstrained' or a number",
    ),
    "optimization-time-negative": (
        _mlp(optimization_time=-1),
        InputError,
        r"must be positive and finite, got -1",
    ),
    "optimization-time-zero": (
        _mlp(optimization_time=0),
        InputError,
        r"must be positive and finite, got 0",
    ),
    "optimization-time-bool": (
        _mlp(optimization_time=True),
        InputError,
        r"optimization_time must be 'constrained', 'unconstrained' or seconds",
    ),
    "optimization-time-nan": (_mlp(optimization_time=math.nan), InputError, r"positive and finite"),
    "accuracy-without-labels": (
        _mlp(input_data=[torch.randn(1, 16)] * 3, metric="accuracy"),
        InputError,
        r'metric="accuracy" needs labels: pass samples as \(\(inputs...\), label\) tuples',
    ),
    "unknown-metric": (
        _mlp(metric="f1"),
        InputError,
        r"unknown metric 'f1'; use one of \['accuracy', 'agreement', 'cosine', "
        r"'numeric_precision'\] or a callable",
    ),
    "negative-threshold": (
        _mlp(metric_drop_ths=-0.1),
        InputError,
        r"metric_drop_ths must be None or a number >= 0, got -0.1",
    ),
    "string-threshold": (
        _mlp(metric_drop_ths="0.1"),
        InputError,
        r"metric_drop_ths must be None or a number >= 0, got '0.1'",
    ),
    "unknown-kwarg": (
        _mlp(max_trials=3),
        TypeError,
        r"unexpected arguments \['max_trials'\]; accepted extras",
    ),
    "model-raises": (
        lambda: {"model": _Broken(), "input_data": _mlp_data()},
        InputError,
        r"the model raised on the first sample: ValueError: expected 3 channels, got 16",
    ),
    "missing-onnx": (
        _mlp(model="no/such/dir/missing.onnx"),
        InputError,
        r"missing.onnx is not an existing .onnx file",
    ),
    "not-onnx-suffix": (
        _mlp(model=Path(__file__).parent),
        InputError,
        r"is not an existing .onnx file",
    ),
    "bad-model-type": (
        _mlp(model=42),
        InputError,
        r"model must be a torch.nn.Module or a path to an .onnx file, got int",
    ),
    "bad-device": (
        _mlp(device="tpu"),
        InputError,
        r"device must be None, 'cpu', 'gpu', 'cuda' or 'cuda:N', got 'tpu'",
    ),
    "ignore-baseline": (
        _mlp(ignore_compilers=["pytorch"]),
        InputError,
        r"ignore_compilers cannot remove 'torch': it is the baseline",
    ),
    "unknown-compressor": (
        _mlp(ignore_compressors=["pruning9000"]),
        InputError,
        r"ignore_compressors: unknown \['pruning9000'\]; valid names are",
    ),
    "config-file": (
        _mlp(config_file="speedster.yaml"),
        InputError,
        r"config_file is not supported",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_fails_fast_with_a_helpful_message(case):
    make_kwargs, error, pattern = BAD_CASES[case]
    kwargs = make_kwargs()
    spy = SpyExecutor()
    started = time.monotonic()
    with pytest.raises(error, match=pattern):
        _optimize(executor=spy, **kwargs)
    assert spy.calls == [], "a trial was scheduled for bad input"
    assert time.monotonic() - started < 10
    assert error is TypeError or issubclass(error, ValueError)


def test_unknown_compiler_name_lists_the_valid_names():
    spy = SpyExecutor()
    with pytest.raises(InputError) as info:
        _optimize(tiny_mlp(), _mlp_data(), executor=spy, ignore_compilers=["tvm", "fastest"])
    message = str(info.value)
    assert "unknown backend 'fastest'" in message
    for name in backend_names():
        assert name in message
    assert spy.calls == []


def test_speedster_compiler_names_are_accepted():
    """'tvm' (not shipped) is a no-op; 'tensor_rt' and 'onnx_runtime' are aliases."""
    spy = SpyExecutor()
    learner = _optimize(
        tiny_mlp(),
        _mlp_data(5),
        executor=spy,
        ignore_compilers=[
            "tvm",
            "tensor_rt",
            "onnx_runtime",
            "deepsparse",
            "openvino",
            "torch_compile",
        ],
        ignore_compressors=["sparseml", "half_precision"],
    )
    _baseline(learner)
    assert {r.candidate.backend for r in learner.results} == {"torch", "torchscript"}
    assert [c for c in spy.calls if c[0] == "submit"] == [
        ("submit", r.candidate.label) for r in learner.results
    ]
    assert "tensorrt: ignored by request" in learner.summary
    assert "onnxruntime: ignored by request" in learner.summary


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_device_without_a_gpu_schedules_nothing():
    spy = SpyExecutor()
    with pytest.raises(ValueError, match="the cluster has no gpu node to optimize for"):
        _optimize(tiny_mlp(), _mlp_data(), executor=spy, device="cuda:0")
    assert [c for c in spy.calls if c != "discover"] == []


@pytest.mark.parametrize("value", ["constrained", 120, 0.5e3, "unconstrained"])
def test_valid_optimization_times(value):
    learner = _optimize(tiny_mlp(), _mlp_data(5), optimization_time=value, device="CPU")
    _baseline(learner)
    labels = sorted(r.candidate.label for r in learner.results)
    if value == "unconstrained":  # every knob value of every backend
        assert labels == [
            "torch fp32",
            "torchscript fp32 optimize_for_inference=False",
            "torchscript fp32 optimize_for_inference=True",
        ]
    else:  # each backend's default knobs only
        assert labels == ["torch fp32", "torchscript fp32 optimize_for_inference=True"]


# -- metric semantics with fake backends of known speed and error ---------------------------------


class _Slowed:
    """A compiled model that takes ``seconds`` longer per call."""

    def __init__(self, inner, seconds):
        self._inner = inner
        self._seconds = seconds

    def __call__(self, *inputs):
        out = self._inner(*inputs)
        end = time.perf_counter() + self._seconds
        while time.perf_counter() < end:
            pass
        return out

    def save(self, directory):
        return self._inner.save(directory)


@pytest.fixture
def fakes(monkeypatch):
    """Registers the fake backends and returns every other backend but the baseline.

    The eager baseline is made 8 ms slower per call, so that the fakes (4 ms fp32, 2 ms fp16,
    1 ms int8, on top of the same model) beat it in a known order.
    """
    monkeypatch.setenv(EXTRA_BACKENDS_ENV, FAKE_BACKENDS)
    eager = get_backend("torch")
    build = eager.build

    def slow_build(*args, **kwargs):
        return _Slowed(build(*args, **kwargs), 0.008)

    monkeypatch.setattr(eager, "build", slow_build)
    return [name for name in backend_names() if name not in ("torch", "fake")]


def _fake_data():
    torch.manual_seed(3)
    return [((torch.randn(1, 16),), torch.tensor([i % 4])) for i in range(5)]


def _run_fakes(ignored, **kwargs):
    model = tiny_mlp()
    learner = _optimize(
        model, _fake_data(), ignore_compilers=ignored, measure_settings=STEADY, **kwargs
    )
    _baseline(learner, drop=None)  # the metric may be the user's
    x = torch.randn(1, 16)
    torch.testing.assert_close(learner(x), _eager(model, x), **TOL)
    return learner


def test_no_threshold_tries_fp32_only(fakes):
    learner = _run_fakes(fakes, metric_drop_ths=None)
    _assert_fp32_only(learner)
    assert set(_by_label(learner)) == {"torch fp32", "fake fp32 slowdown=1"}
    assert (_winner(learner).backend, _winner(learner).precision) == ("fake", "fp32")


def test_zero_threshold_tries_fp32_only(fakes):
    learner = _run_fakes(fakes, metric_drop_ths=0)
    _assert_fp32_only(learner)


def test_small_threshold_lets_fp16_win_and_keeps_int8_out(fakes):
    learner = _run_fakes(fakes, metric_drop_ths=0.01)
    results = _by_label(learner)
    # Speedster's rule: int8 only above a threshold of 0.02.
    assert set(results) == {"torch fp32", "fake fp32 slowdown=1", "fake fp16 slowdown=1"}
    fp16 = results["fake fp16 slowdown=1"]
    assert fp16.status is TrialStatus.COMPLETE
    assert fp16.metric_drop == pytest.approx(0.004 / 1.004, rel=1e-2)  # outputs scaled by 1.004
    assert results["fake fp32 slowdown=1"].metric_drop == pytest.approx(0.0, abs=1e-6)
    winner = _winner(learner)
    assert (winner.backend, winner.precision) == ("fake", "fp16")
    assert winner.metrics["metric_drop"] == fp16.metric_drop
    assert winner.metrics["latency_p50_s"] < winner.metrics["baseline_p50_s"]


def test_int8_over_the_threshold_is_rejected_with_its_drop(fakes):
    learner = _run_fakes(fakes, metric_drop_ths=0.05)
    results = _by_label(learner)
    int8 = results["fake int8/dynamic slowdown=1"]
    assert int8.status is TrialStatus.REJECTED
    # Outputs scaled by 1.5: |a - 1.5a| / max(|a|, |1.5a|) = 1/3 for every element.
    assert int8.metric_drop == pytest.approx(1 / 3, rel=1e-2)
    assert "metric drop 0.333" in int8.reason and "over the accepted 0.05" in int8.reason
    assert int8.latency is None
    winner = _winner(learner)
    assert (winner.backend, winner.precision) == ("fake", "fp16")


def test_a_callable_metric_replaces_numeric_precision(fakes):
    calls = []

    def constant_drop(original, optimized, labels):
        calls.append((original, optimized, labels))
        return 0.123

    learner = _run_fakes(fakes, metric_drop_ths=0.2, metric=constant_drop)
    results = learner.results
    assert len(calls) == len(results) == 4  # torch, fake fp32, fp16, int8: one check each
    assert all(r.metric_drop == pytest.approx(0.123) for r in results)
    assert all(r.ok for r in results)  # numeric precision would have rejected int8 (1/3 > 0.2)
    winner = _winner(learner)
    assert (winner.backend, winner.precision) == ("fake", "int8")
    original, optimized, labels = calls[0]
    assert len(original) == len(optimized) == len(labels) == 1  # 5 samples: 1 held out
    assert labels[0].tolist() == [4 % 4]
    assert isinstance(original[0], tuple) and tuple(original[0][0].shape) == (1, 4)


def test_accuracy_with_labels(fakes):
    """Scaled logits keep their argmax: under accuracy even the int8 fake loses nothing."""
    learner = _run_fakes(fakes, metric_drop_ths=0.05, metric="accuracy")
    results = _by_label(learner)
    assert len(results) == 4
    assert all(r.ok and r.metric_drop == 0.0 for r in results.values()), results
    winner = _winner(learner)
    assert (winner.backend, winner.precision) == ("fake", "int8")


def test_a_callable_metric_can_reject_candidates(fakes):
    def drop_unless_identical(original, optimized, labels):
        same = all(torch.equal(a[0], b[0]) for a, b in zip(original, optimized, strict=True))
        return 0.0 if same else 0.5

    learner = _run_fakes(fakes, metric_drop_ths=0.01, metric=drop_unless_identical)
    results = _by_label(learner)
    assert results["fake fp32 slowdown=1"].ok  # the real model's outputs, unscaled
    fp16 = results["fake fp16 slowdown=1"]
    assert fp16.status is TrialStatus.REJECTED
    assert fp16.metric_drop == 0.5
    assert "over the accepted 0.01" in fp16.reason
    winner = _winner(learner)
    assert (winner.backend, winner.precision) == ("fake", "fp32")


def test_package_exports_the_speedster_entry_points():
    assert speedster_dist.optimize_model is optimize_model
    assert speedster_dist.LearnerMetadata is LearnerMetadata
    assert speedster_dist.load_model is load_model


def test_cosine_metric_tries_int8_below_speedsters_bar_and_names_itself(fakes):
    learner = _run_fakes(fakes, metric="cosine", metric_drop_ths=0.01)
    results = _by_label(learner)
    # Under cosine int8 is tried once any drop is accepted; the fake int8 scales outputs by
    # 1.5, which cosine (a direction measure) does not see: its drop is 0 and it wins.
    int8 = results["fake int8/dynamic slowdown=1"]
    assert int8.status is TrialStatus.COMPLETE
    assert int8.metric_drop == pytest.approx(0.0, abs=1e-6)
    assert results["fake fp16 slowdown=1"].metric_drop == pytest.approx(0.0, abs=1e-6)
    assert (_winner(learner).backend, _winner(learner).precision) == ("fake", "int8")
    assert "Candidates judged by metric 'cosine' (drop <= 0.01)" in learner.summary
