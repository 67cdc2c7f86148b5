"""A service that only loads a learner must not pay for (or depend on) the search machinery."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from speedster_dist.artifacts import LearnerIO, WinnerEntry
from speedster_dist.backends import BuildConfig, get_backend
from speedster_dist.hardware import local_hardware
from speedster_dist.learner import HardwareKeyedLearner
from speedster_dist.modelio import OutputSpec
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.runtime import save_compiled as _save
from speedster_dist.testing.backend_contract import contract_model

pytest.importorskip("onnxruntime")

SEARCH_MACHINERY = ("ray", "optuna", "pyarrow")
# ...nor the project's own search side (which would pull them in as it grows).
SEARCH_PACKAGES = ("speedster_dist.runtime", "speedster_dist.search", "speedster_dist.results")


def _saved_onnx_learner(tmp_path: Path) -> Path:
    model = contract_model("mlp")
    config = BuildConfig(Precision.FP32, DeviceKind.CPU)
    compiled = get_backend("onnxruntime").build(
        model.source, model.calibration, config, tmp_path / "build"
    )
    (tmp_path / "work").mkdir()
    saved = _save(compiled, "onnxruntime", DeviceKind.CPU, tmp_path / "work")
    hardware = local_hardware(DeviceKind.CPU)
    assert hardware is not None
    entry = WinnerEntry(hardware, "onnxruntime", "fp32", "", {}, {}, saved)
    io = LearnerIO(model.source.input_names, False, OutputSpec("tensor", ("output_0",)))
    return HardwareKeyedLearner(io, {hardware.key: entry}).save(tmp_path / "learner")


def test_load_model_and_a_call_import_no_ray_optuna_or_pyarrow(tmp_path: Path) -> None:
    path = _saved_onnx_learner(tmp_path)
    code = textwrap.dedent(
        f"""
        import sys
        import torch
        from speedster_dist import load_model

        learner = load_model({str(path)!r})
        out = learner(torch.randn(2, 16))
        assert out.shape == (2, 4), out.shape
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {SEARCH_MACHINERY!r})
        loaded += [m for m in {SEARCH_PACKAGES!r} if m in sys.modules]
        print(",".join(loaded) or "none")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "none"
