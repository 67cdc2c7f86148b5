"""examples/ray_serve.py on a private local Ray: the learner behind Ray Serve, its batches set
from the operating point, one batch of requests answered as the learner answers each.

Needs Ray Serve's dependencies (the [test] extra's ``ray[serve]``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from speedster_dist import load_model
from speedster_dist.artifacts import LearnerIO, WinnerEntry
from speedster_dist.backends import BuildConfig, get_backend
from speedster_dist.hardware import local_hardware
from speedster_dist.learner import HardwareKeyedLearner
from speedster_dist.modelio import OutputSpec
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.runtime import save_compiled
from speedster_dist.testing.backend_contract import contract_model

serve = pytest.importorskip("ray.serve", reason="Ray Serve needs the [test] extra's ray[serve]")

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ray_serve.py"
POINT = {"objective": "throughput", "batch_size": 4, "concurrency": 2, "throughput": 800.0}


def _example(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    import ray.cloudpickle

    spec = importlib.util.spec_from_file_location("ray_serve_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    # The replicas cannot import the example by name: its deployment travels by value.
    ray.cloudpickle.register_pickle_by_value(module)
    return module


def _saved_learner(root: Path) -> Path:
    """A learner whose winner (this machine's CPU type) was chosen at ``POINT``."""
    hardware = local_hardware(DeviceKind.CPU)
    assert hardware is not None
    model = contract_model("mlp")
    compiled = get_backend("torch").build(
        model.source, [], BuildConfig(Precision.FP32, DeviceKind.CPU), root
    )
    work = root / "work"
    work.mkdir()
    saved = save_compiled(compiled, "torch", DeviceKind.CPU, work)
    metrics = {"latency_p50_s": 0.001}
    entry = WinnerEntry(hardware, "torch", "fp32", "", {}, metrics, saved, POINT)
    io = LearnerIO(model.source.input_names, False, OutputSpec("tensor", model.source.output_names))
    return HardwareKeyedLearner(io, {hardware.key: entry}).save(root / "learner")


def test_the_learner_behind_ray_serve_batches_at_its_operating_point(
    local_ray, tmp_path, monkeypatch
):
    example = _example(monkeypatch)
    path = _saved_learner(tmp_path)
    serve.start(http_options={"location": "NoServer"})  # handles only: no port is opened
    try:
        handle = serve.run(example.app(str(path), trust_code=True), route_prefix=None)
        config = handle.config.remote().result(timeout_s=120)
        # 4 requests a call x 2 calls in flight; their fill wait at 800 requests/s.
        assert config["max_batch_size"] == 8
        assert config["batch_wait_timeout_s"] == pytest.approx(8 / 800.0)
        assert config["operating_point"]["batch_size"] == 4
        requests = [(torch.randn(1 + i % 3, 16),) for i in range(8)]
        responses = [handle.remote(request) for request in requests]  # one batch's worth
        outputs = [response.result(timeout_s=120) for response in responses]
        batches = handle.batches.remote().result(timeout_s=60)
    finally:
        serve.shutdown()
    learner = load_model(path, trust_code=True)
    for request, output in zip(requests, outputs, strict=True):
        torch.testing.assert_close(output, learner(*request))
    assert sum(batches) == 8 and max(batches) <= 8
