"""The job description a sweep's processes receive, how their ends are named, and the study
storage a sweep file gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from speedster_dist.errors import InputError
from speedster_dist.fleet import JobSpec, plan_from_mapping
from speedster_dist.fleet._sweep_child import job_from_json, job_to_json
from speedster_dist.fleet._sweep_run import _exit_description


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
