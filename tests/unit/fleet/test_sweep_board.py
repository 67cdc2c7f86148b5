"""The sweep's live table and the job description its processes receive."""

from __future__ import annotations

from pathlib import Path

import pytest

from speedster_dist.fleet import JobSpec, plan_from_mapping
from speedster_dist.fleet._board import SweepBoard
from speedster_dist.fleet._sweep_child import job_from_json, job_to_json
from speedster_dist.fleet._sweep_run import _exit_description
from speedster_dist.inputs import InputError


def _trial(hw, label, status, p50=None):
    return {"event": "trial", "hardware": hw, "label": label, "status": status, "p50_s": p50}


def test_the_table_shows_each_model_and_type_with_status_and_best_so_far():
    board = SweepBoard(["bert", "mlp", "vit"])
    board.job("bert", "running")
    board.event("bert", _trial("cpu-a", "torch fp32", "complete", 0.010))
    board.event("bert", _trial("cpu-a", "ov int8", "complete", 0.004))
    board.event("bert", _trial("cpu-a", "ort fp16", "failed"))
    board.event("bert", _trial("gpu-b", "torch fp32", "complete", 0.002))
    board.job("mlp", "running")
    board.event("mlp", _trial("cpu-a", "torch fp32", "complete", 0.001))
    board.job("mlp", "failed")
    rows = {(r[0], r[1]): r[2:] for r in board.rows()}
    assert rows[("bert", "cpu-a")] == ["searching", "3", "4 ms ov int8"]
    assert rows[("bert", "gpu-b")] == ["searching", "1", "2 ms torch fp32"]
    assert rows[("mlp", "cpu-a")] == ["failed", "1", "1 ms torch fp32"]
    assert rows[("vit", "-")] == ["queued", "0", "-"]
    board.event(
        "bert", {"event": "done", "winners": {"cpu-a": {"label": "ov int8", "p50_s": 0.004}}}
    )
    board.job("bert", "done")
    status = {(r[0], r[1]): r[2] for r in board.rows()}
    assert status[("bert", "cpu-a")] == "done" and status[("bert", "gpu-b")] == "no winner"
    text = board.render()
    assert text.splitlines()[0].split() == [
        "model",
        "hardware",
        "type",
        "status",
        "trials",
        "best",
        "so",
        "far",
        "(p50)",
    ]


def test_a_job_crosses_to_its_process_unchanged_and_crashes_are_named():
    spec = JobSpec(
        "a",
        Path("m.onnx"),
        Path("x.npz"),
        ignore_compilers=("tensorrt",),
        node_groups=("gpu-l4",),
        study_storage="sqlite:///studies.db",  # a URL keeps its three slashes
        resume=True,
        prices=Path("prices.yaml"),
    )
    assert job_from_json(job_to_json(spec)) == spec
    assert _exit_description(-11) == "killed by SIGSEGV"
    assert _exit_description(3) == "exited with code 3"


def test_sweep_files_take_the_fleet_settings(tmp_path):
    raw = {
        "jobs": [{"model": "m.onnx", "inputs": "x.npz"}],
        "defaults": {"node_groups": ["gpu-l4"], "study_storage": "st", "resume": True},
    }
    (spec,) = plan_from_mapping(raw, tmp_path).jobs
    assert spec.node_groups == ("gpu-l4",) and spec.resume
    assert spec.study_storage == str(tmp_path / "st")  # a path: relative to the YAML


@pytest.mark.parametrize("url", ["sqlite:///studies.db", "sqlite:////abs/studies.db"])
def test_a_storage_url_in_a_sweep_file_is_kept_as_optuna_reads_it(tmp_path, url):
    raw = {"jobs": [{"model": "m.onnx", "inputs": "x.npz", "study_storage": url}]}
    (spec,) = plan_from_mapping(raw, tmp_path).jobs
    assert spec.study_storage == url
    assert spec.fleet()["study_storage"] == url


@pytest.mark.parametrize(
    ("value", "message"),
    [(5, "give it as text"), ("mongodb://h/db", "Optuna cannot open a 'mongodb' URL")],
)
def test_a_bad_storage_in_a_sweep_file_is_refused_naming_the_job(tmp_path, value, message):
    raw = {"jobs": [{"name": "j", "model": "m.onnx", "inputs": "x.npz", "study_storage": value}]}
    with pytest.raises(InputError, match="j") as info:
        plan_from_mapping(raw, tmp_path)
    assert message in str(info.value)
