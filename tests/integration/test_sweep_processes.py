"""Sweeps with one driver process per job, in this process's local Ray: a job whose process
crashes mid-search ends alone, and a resumed sweep (its studies in an SQLite URL) does not
measure finished trials again."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from speedster_dist import LearnerMetadata
from speedster_dist.cli import EXIT_OK
from speedster_dist.fleet import JobSpec, run_sweep
from speedster_dist.fleet._sweep_run import JobCrashed
from speedster_dist.results import read_history
from speedster_dist.testing import models

from .test_cli import IGNORE, cli

pytestmark = pytest.mark.integration

# The real job process, except that job "boom" dies of SIGSEGV after its first trial.
CRASHING_CHILD = """
import io, json, os, signal, sys
from speedster_dist.fleet import _sweep_child

request = sys.stdin.read()
sys.stdin = io.StringIO(request)
real_emit = _sweep_child._emit_trial

def emit_then_crash(result):
    real_emit(result)
    os.kill(os.getpid(), signal.SIGSEGV)

if json.loads(request)["spec"]["name"] == "boom":
    _sweep_child._emit_trial = emit_then_crash
sys.exit(_sweep_child.main())
"""


def _mlp(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.trace(models.tiny_mlp(), (torch.randn(1, 16),))
    torch.jit.save(scripted, str(folder / "mlp.pt"))
    data = np.random.default_rng(1).normal(size=(5, 16)).astype("f4")
    np.savez(folder / "mlp.npz", data)
    return folder / "mlp.pt", folder / "mlp.npz"


def test_a_job_whose_process_crashes_mid_search_ends_alone(local_ray, tmp_path, capsys):
    model, inputs = _mlp(tmp_path)
    child = tmp_path / "child.py"
    child.write_text(CRASHING_CHILD)
    ignore = tuple(IGNORE.split(","))
    specs = tuple(
        JobSpec(name, model, inputs, out=tmp_path / "learners" / name, ignore_compilers=ignore)
        for name in ("boom", "fine")
    )
    command = [sys.executable, str(child)]
    results = run_sweep(specs, tmp_path / "history", 2, quick=True, command=command)
    boom, fine = results
    assert isinstance(boom.error, JobCrashed)
    assert "killed by SIGSEGV" in str(boom.error)
    assert fine.error is None and fine.winners
    assert LearnerMetadata.read(tmp_path / "learners" / "fine").hardware_types()
    assert not (tmp_path / "learners" / "boom" / "manifest.json").exists()
    rows = read_history(tmp_path / "history").to_pylist()
    assert len([r for r in rows if r["model_name"] == "boom"]) == 1  # its one finished trial
    assert len([r for r in rows if r["model_name"] == "fine"]) >= 2
    table = capsys.readouterr().out  # the final table: model x hardware type
    assert "best so far" in table
    shown = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| ")  # a row of the plain ASCII table (not a terminal here)
    ]
    assert any(row[0] == "boom" and row[2].startswith("failed") for row in shown), table
    assert any(row[0] == "fine" and row[2] == "done" for row in shown), table


@pytest.mark.slow  # two sweeps of job processes
def test_a_resumed_sweep_does_not_measure_finished_trials_again(local_ray, tmp_path):
    _mlp(tmp_path)
    (tmp_path / "sweep.yaml").write_text(
        f"""
out: learners
history: history
concurrency: 1
defaults: {{ignore_compilers: [{IGNORE}], optimization_time: 120, metric_drop_ths: 0.05}}
jobs:
  - name: mlp
    model: mlp.pt
    inputs: mlp.npz
"""
    )
    # A storage URL as Optuna users write it: one SQLite file that optuna-dashboard opens.
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    args = ["sweep", tmp_path / "sweep.yaml", "--quick-measure", "--study-storage", url]
    assert cli(*args) == EXIT_OK
    # the trials (not the confirmation's re-timings, role "confirmed")
    first = [r for r in read_history(tmp_path / "history").to_pylist() if r["role"] != "confirmed"]
    (name,) = optuna.get_all_study_names(url)  # one hardware type: one study, named for people
    assert name.startswith("mlp-cpu-")
    study = optuna.load_study(study_name=name, storage=url)
    assert study.metric_names == ["p50_latency_s"] and study.user_attrs["model"] == "mlp"
    measured = [t for t in study.trials if "status" in t.user_attrs]  # not duplicate proposals
    assert len(measured) == len(first)
    assert cli(*args, "--resume") == EXIT_OK
    rows = [r for r in read_history(tmp_path / "history").to_pylist() if r["role"] != "confirmed"]
    first_ids = {r["run_id"] for r in first}
    second = [r for r in rows if r["run_id"] not in first_ids]
    assert len(first) >= 4 and second  # the first run measured the whole (small) space

    def config(row):
        return (row["hardware_type"], row["backend"], row["precision"], row["knobs"])

    best = min((r for r in first if r["status"] == "complete"), key=lambda r: r["latency_p50_s"])
    baselines = {config(r) for r in first if r["is_baseline"]}
    # Only the baseline (same-session speedup) and the previous best (its files) again.
    assert {config(r) for r in second} <= baselines | {config(best)}
    assert len(second) < len(first)
