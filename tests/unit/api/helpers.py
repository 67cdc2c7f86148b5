"""What the tests of ``optimize_model`` share: quick measurement settings, an executor that
records what the driver asked of it, and the checks every returned learner must pass."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from speedster_dist import LearnerMetadata, load_model, optimize_model
from speedster_dist.measure import MeasureSettings
from speedster_dist.records import Precision, TrialResult, TrialStatus
from speedster_dist.runtime import InlineExecutor

# load_check=False: this shared test machine is always busy (the check has its own tests).
TINY = MeasureSettings(
    warmup_calls=1, warmup_s=0, min_calls=3, min_duration_s=0.0, load_check=False
)
# The fake-backend tests compare latencies of a few ms: a median over 7 calls is robust to the
# odd slow first call.
STEADY = MeasureSettings(
    warmup_calls=2, warmup_s=0, min_calls=7, min_duration_s=0.0, load_check=False
)
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


def optimize(model, input_data, executor=None, **kwargs):
    """``optimize_model`` in this process on the CPU, quickly, slow backends left out."""
    kwargs.setdefault("ignore_compilers", SLOW_BACKENDS)
    kwargs.setdefault("measure_settings", TINY)
    kwargs.setdefault("device", "cpu")  # one hardware type, also on a machine with a GPU
    return optimize_model(
        model, input_data, executor=executor or InlineExecutor(), progress=False, **kwargs
    )


def baseline(learner, backend="torch", drop=0.0):
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


def p50(result: TrialResult) -> float:
    assert result.latency is not None, result  # a completed trial carries its latency
    return result.latency.p50


def winner_entry(learner):
    (entry,) = learner.entries.values()
    return entry


def by_label(learner):
    return {r.candidate.label: r for r in learner.results}


def eager(model, *args, **kwargs):
    with torch.no_grad():
        return model(*args, **kwargs)


def assert_hf_close(out, expected, keys, cls):
    assert type(out) is cls
    assert tuple(out.keys()) == keys  # caches (past_key_values) are not outputs of the learner
    for key in keys:
        torch.testing.assert_close(out[key], expected[key], **TOL)


def assert_same(a, b):
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        return
    assert type(a) is type(b)
    assert tuple(a.keys()) == tuple(b.keys())
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6)


def assert_round_trip(learner, tmp_path, call):
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
        assert winner_entry(loaded).backend == winner_entry(learner).backend
        assert_same(call(loaded), expected)
    return expected


def assert_fp32_only(learner):
    assert {r.candidate.precision for r in learner.results} == {Precision.FP32}
