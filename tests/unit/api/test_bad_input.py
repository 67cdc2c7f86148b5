"""Bad input to ``optimize_model``: a helpful error before any trial is scheduled; and the
settings users may pass in Speedster's spelling."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch

from speedster_dist.backends import backend_names
from speedster_dist.errors import InputError
from speedster_dist.testing.models import tiny_bert, tiny_mlp

from .helpers import TEXTS, SpyExecutor, baseline, optimize

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
    "folder-without-config": (  # a folder is a Hugging Face model folder (or nothing)
        _mlp(model=Path(__file__).parent),
        InputError,
        r"api has no config.json: it is not a Hugging Face model folder",
    ),
    "bad-model-type": (
        _mlp(model=42),
        InputError,
        r"model must be a torch.nn.Module, a SentenceTransformer, a Hugging Face model id or "
        r"folder, or a path to an .onnx file, got int",
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
        optimize(executor=spy, **kwargs)
    assert spy.calls == [], "a trial was scheduled for bad input"
    assert time.monotonic() - started < 10
    assert error is TypeError or issubclass(error, ValueError)


def test_unknown_compiler_name_lists_the_valid_names():
    spy = SpyExecutor()
    with pytest.raises(InputError) as info:
        optimize(tiny_mlp(), _mlp_data(), executor=spy, ignore_compilers=["tvm", "fastest"])
    message = str(info.value)
    assert "unknown backend 'fastest'" in message
    for name in backend_names():
        assert name in message
    assert spy.calls == []


def test_speedster_compiler_names_are_accepted():
    """'tvm' (not shipped) is a no-op; 'tensor_rt' and 'onnx_runtime' are aliases."""
    spy = SpyExecutor()
    learner = optimize(
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
    baseline(learner)
    assert {r.candidate.backend for r in learner.results} == {"torch", "torchscript"}
    assert [c for c in spy.calls if c[0] == "submit"] == [
        ("submit", r.candidate.label) for r in learner.results
    ]
    assert "tensorrt: ignored by request" in learner.summary
    assert "onnxruntime: ignored by request" in learner.summary


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_device_without_a_gpu_schedules_nothing():
    spy = SpyExecutor()
    with pytest.raises(InputError, match="the cluster has no gpu node to optimize for"):
        optimize(tiny_mlp(), _mlp_data(), executor=spy, device="cuda:0")
    assert [c for c in spy.calls if c != "discover"] == []


@pytest.mark.parametrize("value", ["constrained", 120, 0.5e3, "unconstrained"])
def test_valid_optimization_times(value):
    learner = optimize(tiny_mlp(), _mlp_data(5), optimization_time=value, device="CPU")
    baseline(learner)
    labels = sorted(r.candidate.label for r in learner.results)
    if value == "unconstrained":  # every knob value of every backend
        assert labels == [
            "torch fp32",
            "torchscript fp32 optimize_for_inference=False",
            "torchscript fp32 optimize_for_inference=True",
        ]
    else:  # each backend's default knobs only
        assert labels == ["torch fp32", "torchscript fp32 optimize_for_inference=True"]
