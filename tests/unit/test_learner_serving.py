"""The learner serves the point it was chosen for: its operating point survives save and
load (older manifests still load), ``run_many`` returns each request's outputs in order,
equal to one call each, and calls from several threads are safe."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
import torch

from speedster_dist import load_model
from speedster_dist.artifacts import ArtifactError, LearnerIO, WinnerEntry
from speedster_dist.backends import UNDECLARED_THREADS, BuildConfig, ThreadRunner, get_backend
from speedster_dist.errors import ShapeError
from speedster_dist.hardware import local_hardware
from speedster_dist.learner import HardwareKeyedLearner, InferenceLearner
from speedster_dist.modelio import OutputSpec
from speedster_dist.records import DeviceKind, HardwareType, Precision
from speedster_dist.runtime import save_compiled
from speedster_dist.testing.backend_contract import contract_model


def _local() -> HardwareType:
    hardware = local_hardware(DeviceKind.CPU)
    assert hardware is not None  # every machine has a CPU hardware type
    return hardware


LOCAL = _local()
POINT = {
    "objective": "throughput",
    "batch_size": 4,
    "concurrency": 2,
    "knobs": {"num_threads": 1},
    "throughput": 812.5,
    "p50_ms": 3.5,
    "p99_ms": 9.25,
    "memory_mb": 12.0,
    "measured": True,
}


def _learner(tmp_path, kind="mlp", serving=POINT):
    model = contract_model(kind)
    compiled = get_backend("torch").build(
        model.source, [], BuildConfig(Precision.FP32, DeviceKind.CPU), tmp_path
    )
    work = tmp_path / "work"
    work.mkdir()
    saved = save_compiled(compiled, "torch", DeviceKind.CPU, work)
    metrics = {"latency_p50_s": 0.002, "latency_p99_s": 0.004}
    entry = WinnerEntry(LOCAL, "torch", "fp32", "", {}, metrics, saved, serving)
    names = model.source.output_names
    spec = OutputSpec("tensor" if kind == "mlp" else "tuple", names)
    io = LearnerIO(model.source.input_names, kind == "bert", spec)
    return model, HardwareKeyedLearner(io, {LOCAL.key: entry})


def test_the_operating_point_round_trips_through_save_and_load(tmp_path):
    _, learner = _learner(tmp_path)
    assert learner.operating_point() == POINT
    path = learner.save(tmp_path / "saved")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["version"] == 2
    assert manifest["entries"][LOCAL.key]["serving"] == POINT
    loaded = load_model(path, trust_code=True)
    point = loaded.operating_point()
    assert point == POINT
    assert {"batch_size", "concurrency", "throughput", "p99_ms"} <= set(point)


def test_a_learner_saved_before_operating_points_still_loads(tmp_path):
    _, learner = _learner(tmp_path)
    path = learner.save(tmp_path / "saved")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["version"] = 1
    del manifest["entries"][LOCAL.key]["serving"]
    del manifest["entries"][LOCAL.key]["metrics"]["latency_p99_s"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    point = load_model(path, trust_code=True).operating_point()
    # One request per call, one at a time: the latency search's way, from its p50.
    assert point["batch_size"] == 1 and point["concurrency"] == 1
    assert point["throughput"] == pytest.approx(500.0) and point["p99_ms"] is None
    assert point["measured"] is True


@pytest.mark.parametrize(
    ("serving", "field"),
    [
        ({**POINT, "batch_size": 0}, "serving.batch_size"),
        ({**POINT, "concurrency": "2"}, "serving.concurrency"),
        ({**POINT, "throughput": "fast"}, "serving.throughput"),
        ({**POINT, "knobs": {"threads": [1, 2]}}, "serving.knobs.threads"),
        ("batch 4", "serving"),
    ],
)
def test_a_damaged_operating_point_is_refused_naming_its_field(tmp_path, serving, field):
    _, learner = _learner(tmp_path)
    path = learner.save(tmp_path / "saved")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["entries"][LOCAL.key]["serving"] = serving
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=field.replace(".", r"\.")):
        load_model(path, trust_code=True)


def _requests(model, count):
    pool = [*model.calibration, *model.validation]
    return [pool[i % len(pool)] for i in range(count)]


def test_run_many_returns_each_requests_outputs_in_order(tmp_path):
    model, learner = _learner(tmp_path)  # samples of 1 to 4 rows: calls mix their sizes
    requests = _requests(model, 13)
    forms = [r if i % 3 else r[0] for i, r in enumerate(requests)]  # a tuple, or one tensor
    served = learner.run_many(forms)
    assert len(served) == 13
    for request, outputs in zip(requests, served, strict=True):
        torch.testing.assert_close(outputs, learner(*request))
    assert learner.run_many([]) == []


def test_run_many_takes_keyword_requests_of_several_shapes(tmp_path):
    model, learner = _learner(tmp_path, "bert")  # sequences of 8 to 16 tokens
    names = model.source.input_names
    requests = [dict(zip(names, s, strict=True)) for s in _requests(model, 9)]
    for request, outputs in zip(requests, learner.run_many(requests), strict=True):
        expected = learner(**request)
        assert len(outputs) == len(expected)
        for got, want in zip(outputs, expected, strict=True):
            torch.testing.assert_close(got, want)


class _NotReentrant:
    """A compiled model that fails when two calls overlap (like one synchronous request);
    its runner, as such a backend declares it, runs one request at a time."""

    def __init__(self, inner):
        self._inner = inner
        self._busy = threading.Lock()

    def runner(self, concurrency):
        return ThreadRunner(self, 1, UNDECLARED_THREADS)

    def __call__(self, *inputs):
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("two calls at once")
        try:
            time.sleep(0.001)  # widens the window two unguarded calls would overlap in
            return self._inner(*inputs)
        finally:
            self._busy.release()


def test_calls_from_several_threads_are_safe(tmp_path):
    model, learner = _learner(tmp_path)
    requests = _requests(model, 48)
    expected = [learner(*r) for r in requests]
    inner = learner.for_hardware()
    guarded = InferenceLearner(cast(Any, _NotReentrant(inner.compiled)), inner.io, inner.entry)
    learner._active[learner.selection.key] = guarded

    def call(index):
        return learner(*requests[index])

    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(call, range(48)))
        many = pool.submit(learner.run_many, requests).result()
    for got, served, want in zip(outputs, many, expected, strict=True):
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(served, want)


def test_the_first_calls_from_several_threads_load_one_winner(tmp_path):
    model, learner = _learner(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda r: learner(*r), _requests(model, 16)))
    assert list(learner._active) == [LOCAL.key]


class _FixedBatch:
    """A model built for calls of exactly ``rows`` rows (as OpenVINO for a static batch)."""

    def __init__(self, inner, rows):
        self._inner = inner
        self.fixed_shapes = {"input": (rows, 16)}
        self.calls = 0

    def __call__(self, *inputs):
        assert tuple(inputs[0].shape) == self.fixed_shapes["input"], inputs[0].shape
        self.calls += 1
        return self._inner(*inputs)


def test_a_winner_built_for_its_batch_pads_shorter_calls(tmp_path):
    _, learner = _learner(tmp_path)
    inner = learner.for_hardware()
    fixed = _FixedBatch(inner.compiled, 4)
    padded = InferenceLearner(cast(Any, fixed), inner.io, inner.entry)
    single = torch.randn(1, 16)
    torch.testing.assert_close(padded(single), inner(single))
    requests = [(torch.randn(1, 16),) for _ in range(6)]
    fixed.calls = 0
    served = padded.run_many(requests)
    assert fixed.calls == 2  # 4 requests, then 2 padded to 4
    for request, outputs in zip(requests, served, strict=True):
        torch.testing.assert_close(outputs, inner(*request))
    with pytest.raises(ShapeError, match=r"built for input \[4, 16\] only"):
        padded.run_many([(torch.randn(5, 16),)])


def test_a_latency_winner_keeps_refusing_other_shapes(tmp_path):
    _, learner = _learner(tmp_path, serving={**POINT, "objective": "latency"})
    inner = learner.for_hardware()
    strict = InferenceLearner(cast(Any, _FixedBatch(inner.compiled, 4)), inner.io, inner.entry)
    with pytest.raises(ShapeError, match="was built for input"):
        strict(torch.randn(1, 16))
