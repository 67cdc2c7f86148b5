"""The job description a sweep's processes receive, and how their ends are named."""

from __future__ import annotations

from pathlib import Path

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
        study_storage=Path("studies"),
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
    assert spec.study_storage == tmp_path / "st"
