"""The nightly rebench of a throughput learner: its winner is rebuilt and re-measured at the
operating point it was chosen for (the manifest's ``serving``), the baseline beside it at the
same point, and the night's rows carry that point and the measured throughput."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speedster_dist.artifacts import (
    KIT_FILE,
    InputSource,
    LearnerIO,
    ModelSource,
    WinnerEntry,
    save_learner,
    sha256_file,
    write_kit,
)
from speedster_dist.backends import BuildConfig, get_backend
from speedster_dist.fleet import NightlySettings, rebench_learner
from speedster_dist.hardware import local_cpu
from speedster_dist.modelio import OutputSpec, make_source_model
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.results import read_history
from speedster_dist.runtime import InlineExecutor, save_compiled
from speedster_dist.testing.models import tiny_mlp
from speedster_dist.testing.registry import no_extra_backends

pytest.importorskip("onnxruntime")

LOCAL = local_cpu()
IGNORED = ["torchscript", "torch_compile", "openvino", "tensorrt"]
SERVING = {
    "objective": "throughput",
    "batch_size": 4,
    "concurrency": 2,
    "throughput": 1000.0,
    "p99_ms": 1.0,
    "knobs": {},
}


def _learner(work: Path) -> Path:
    """A throughput learner with an ONNX Runtime winner for this machine at 4x2, and its kit."""
    model = tiny_mlp()
    rows = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    torch.onnx.export(
        model,
        (rows[:1],),
        str(work / "model.onnx"),
        input_names=["input_0"],
        output_names=["output_0"],
        dynamic_axes={"input_0": {0: "batch"}, "output_0": {0: "batch"}},
        dynamo=False,
    )
    np.savez(work / "inputs.npz", rows.numpy())
    source, _ = make_source_model(model, ("input_0",), [(rows[:1],)], False)
    config = BuildConfig(Precision.FP32, DeviceKind.CPU)
    compiled = get_backend("onnxruntime").build(source, [], config, work / "build")
    (work / "saved").mkdir()
    saved = save_compiled(compiled, "onnxruntime", DeviceKind.CPU, work / "saved")
    out = work / "learner"
    options = {
        "ignore_compilers": IGNORED,
        "searcher": "exhaustive",
        "metric_drop_ths": None,
        "objective": "throughput",
        "batch_sizes": [1, 4],
        "concurrency": [1, 2],
        "latency_budget_ms": 10_000.0,
    }
    kit = write_kit(
        out,
        "tiny",
        ModelSource(work / "model.onnx", "onnx"),
        InputSource(work / "inputs.npz"),
        options,
    )
    io = LearnerIO(("input_0",), False, OutputSpec("tensor", ("output_0",)))
    entry = WinnerEntry(LOCAL, "onnxruntime", "fp32", "", {}, {}, saved, SERVING)
    save_learner(out, io, {LOCAL.key: entry}, saved, kit_sha256=sha256_file(kit / KIT_FILE))
    return out


def test_a_throughput_winner_is_re_measured_at_its_operating_point(tmp_path, monkeypatch):
    no_extra_backends(monkeypatch)
    monkeypatch.delenv("SPEEDSTER_DIST_SIGNING_KEY", raising=False)
    monkeypatch.delenv("SPEEDSTER_DIST_VERIFY_KEY", raising=False)
    path = _learner(tmp_path)
    settings = NightlySettings(
        tmp_path / "history", "night-1", search_new=False, quick=True, trust_code=True
    )
    report = rebench_learner("tiny", path, InlineExecutor, settings)
    assert report.remeasured == 2 and not report.error
    rows = {r["role"]: r for r in read_history(tmp_path / "history").to_pylist()}
    winner, base = rows["winner"], rows["baseline"]
    assert winner["backend"] == "onnxruntime" and winner["status"] == "complete", winner["reason"]
    for row in (winner, base):  # side by side at the same point
        assert (row["load_batch_size"], row["concurrency"]) == (4, 2)
        assert row["objective"] == "throughput" and row["throughput"] > 0
        assert row["latency_tail_s"] is not None and row["run_kind"] == "rebench"
