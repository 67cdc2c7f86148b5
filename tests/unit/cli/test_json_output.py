"""Scriptable output: ``--json`` puts one document on stdout and everything else on stderr;
``-v``/``--debug`` show the package's logs. The searches run in this process (an inline
executor instead of Ray), through the real command line."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch

import speedster_dist.api as api
from speedster_dist.cli import EXIT_OK, EXIT_USAGE, _optimize, main
from speedster_dist.cli._json_output import stdout_to_stderr
from speedster_dist.fleet import FORMAT_VERSION
from speedster_dist.learner import load_model
from speedster_dist.runtime import InlineExecutor
from speedster_dist.testing.models import tiny_mlp

from ..results.conftest import run, trial

ENVELOPE = {"format", "version", "command", "exit_code", "error"}


@pytest.fixture
def mlp(tmp_path):
    """A tiny MLP as an ONNX file, and an .npz of 6 samples."""
    model = tmp_path / "mlp.onnx"
    torch.onnx.export(
        tiny_mlp(), (torch.randn(1, 16),), str(model), input_names=["x"], dynamo=False
    )
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).normal(size=(6, 16)).astype("f4"))
    return model, tmp_path / "x.npz"


@pytest.fixture
def inline(monkeypatch):
    """``optimize`` searches in this process: no cluster is connected."""
    monkeypatch.setattr(_optimize, "connect_cluster", lambda address: address)
    monkeypatch.setattr(api, "_ray_executor", lambda options: InlineExecutor())


def optimize(mlp, tmp_path, *extra):
    model, inputs = mlp
    args = ["optimize", model, "--inputs", inputs, "--out", tmp_path / "learner"]
    args += ["--history", tmp_path / "history", "--ignore-compilers", "openvino"]
    args += ["--device", "cpu", "--quick-measure", *extra]
    return main([str(a) for a in args])


def test_optimize_json_is_all_of_stdout_and_holds_the_winner(mlp, inline, tmp_path, capsys):
    assert optimize(mlp, tmp_path, "--json") == EXIT_OK
    out, err = capsys.readouterr()
    doc = json.loads(out)  # the whole of stdout is one document
    assert set(doc) >= ENVELOPE and doc["format"] == "speedster-dist.optimize"
    assert (doc["version"], doc["command"], doc["exit_code"], doc["error"]) == (
        FORMAT_VERSION,
        "optimize",
        0,
        None,
    )
    learner = load_model(tmp_path / "learner")
    (winner,) = doc["winners"]
    entry = learner.entries[winner["hardware_type"]]
    assert (winner["backend"], winner["precision"], winner["knobs"]) == (
        entry.backend,
        entry.precision,
        entry.knobs,
    )
    assert winner["latency_p50_s"] == entry.metrics["latency_p50_s"] > 0
    if winner["confirmed"]:  # re-timed side by side: the confirmed speed-up
        assert winner["speedup"] == pytest.approx(winner["confirmed"]["speedup"])
    else:
        speedup = winner["baseline_p50_s"] / winner["latency_p50_s"]
        assert winner["speedup"] == pytest.approx(speedup)
    trials = doc["trials"]
    assert {t["status"] for t in trials} <= {"complete", "rejected", "pruned", "failed"}
    assert sum(t["is_baseline"] for t in trials) == 1 and all("reason" in t for t in trials)
    assert any(t["label"] == winner["label"] and t["status"] == "complete" for t in trials)
    assert doc["paths"] == {
        "learner": str(tmp_path / "learner"),
        "kit": str(tmp_path / "learner" / "rebench"),
        "history": str(tmp_path / "history"),
    }
    assert (tmp_path / "learner" / "rebench" / "kit.json").is_file()
    assert "latency (p50 per batch)" in err  # the summary: a table for people, on stderr


def test_a_refused_json_run_still_prints_one_document(mlp, inline, tmp_path, capsys):
    assert optimize(mlp, tmp_path, "--json", "--metric-drop-ths", "nan") == EXIT_USAGE
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["exit_code"] == EXIT_USAGE and "NaN or infinity" in doc["error"]
    assert "winners" not in doc and "speedster-dist: error:" in err


def test_v_shows_the_packages_info_logs_and_debug_its_debug_logs(tmp_path, capsys):
    history = tmp_path / "history"
    writer = run(history, "search")
    writer.append(trial("torch", "fp32", "cpu-x", 0.010, baseline=True))
    page = tmp_path / "report.html"
    report = ["report", "--history", str(history), "--out", str(page)]
    assert main(report) == EXIT_OK
    assert "INFO" not in capsys.readouterr().err  # warnings only, by default
    assert main([*report, "-v"]) == EXIT_OK
    err = capsys.readouterr().err
    assert "INFO speedster_dist.results._history: read 1 trials from 1 files" in err
    assert "DEBUG" not in err
    assert main([*report, "--debug"]) == EXIT_OK
    assert "DEBUG speedster_dist.results.report._page: report page:" in capsys.readouterr().err
    assert main(report) == EXIT_OK  # each run sets its own level, then puts it back
    assert "INFO" not in capsys.readouterr().err


def test_the_json_document_of_cluster_and_the_rebench_file_share_the_envelope(tmp_path):
    from speedster_dist.cli._rebench import _write_json

    _write_json(tmp_path / "night.json", 3, {"run_id": "r", "learners": [], "comparisons": []})
    night = json.loads((tmp_path / "night.json").read_text())
    assert night["format"] == "speedster-dist.rebench" and night["exit_code"] == 3
    assert set(night) >= ENVELOPE and night["version"] == FORMAT_VERSION


def test_stdout_goes_to_stderr_down_to_the_file_descriptor(capfd):
    with stdout_to_stderr():
        print("from python")
        sys.stdout.flush()
        os.write(1, b"from a C library\n")  # below Python: the descriptor itself
    print("after", flush=True)
    out, err = capfd.readouterr()
    assert out == "after\n"
    assert "from python" in err and "from a C library" in err


# A sweep's job process as the real one, searching in its own process instead of on Ray.
INLINE_CHILD = """
import sys

import speedster_dist.api as api
import speedster_dist.runtime.ray as ray_face
from speedster_dist.fleet import _sweep_child
from speedster_dist.runtime import InlineExecutor

ray_face.connect = lambda *args, **kwargs: None
api._ray_executor = lambda options: InlineExecutor()
sys.exit(_sweep_child.main())
"""


@pytest.mark.slow
def test_sweep_json_lists_each_jobs_winners_and_trials(mlp, tmp_path, capsys, monkeypatch):
    from functools import partial
    from pathlib import Path

    from speedster_dist.cli import _sweep

    root = Path(__file__).resolve().parents[3]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    child = tmp_path / "child.py"
    child.write_text(INLINE_CHILD)
    monkeypatch.setattr(_sweep, "connect_cluster", lambda address: address)
    monkeypatch.setattr(
        _sweep, "run_sweep", partial(_sweep.run_sweep, command=[sys.executable, str(child)])
    )
    model, inputs = mlp
    (tmp_path / "sweep.yaml").write_text(
        f"history: history\njobs:\n  - name: mlp\n    model: {model.name}\n"
        f"    inputs: {inputs.name}\n    ignore_compilers: openvino\n    device: cpu\n"
    )
    args = ["sweep", str(tmp_path / "sweep.yaml"), "--json", "--quick-measure"]
    assert main([*args, "--cluster", "127.0.0.1:1", "--concurrency", "1"]) == EXIT_OK
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["format"] == "speedster-dist.sweep" and doc["exit_code"] == 0
    assert doc["paths"] == {"history": str(tmp_path / "history")}
    (job,) = doc["jobs"]
    assert (job["name"], job["status"], job["error"]) == ("mlp", "done", None)
    assert job["paths"]["learner"] == str(tmp_path / "learners" / "mlp")
    (winner,) = job["winners"]
    assert winner["hardware_type"] in load_model(tmp_path / "learners" / "mlp").entries
    assert any(t["label"] == winner["label"] for t in job["trials"] if t["status"] == "complete")
    assert all(set(t) >= {"status", "reason", "latency_p50_s"} for t in job["trials"])
    assert "Sweep results" in err and "--- mlp ---" in err  # the tables, for people
