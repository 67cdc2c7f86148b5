"""The objective and its constraints in a sweep file and on the command line: the same
settings as optimize_model's, refused the same way before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from speedster_dist.cli import build_parser
from speedster_dist.cli._optimize import objective_settings
from speedster_dist.errors import InputError
from speedster_dist.fleet import JobSpec, plan_from_mapping
from speedster_dist.fleet._sweep_child import job_from_json, job_to_json


def test_a_sweep_job_takes_the_objective_and_its_constraints(tmp_path):
    raw = {
        "defaults": {"objective": "throughput", "latency_budget_ms": 200},
        "jobs": [
            {
                "name": "minilm",
                "model": "m.onnx",
                "inputs": "x.npz",
                "batch_sizes": [1, 8, 32],
                "concurrency": 2,
                "max_memory_mb": 900,
                "latency_percentile": 95,
            }
        ],
    }
    (spec,) = plan_from_mapping(raw, tmp_path).jobs
    assert spec.objective == "throughput" and spec.latency_budget_ms == 200.0
    assert spec.batch_sizes == (1, 8, 32) and spec.concurrency == (2,)
    assert spec.serving() == {
        "objective": "throughput",
        "batch_sizes": [1, 8, 32],
        "concurrency": [2],
        "latency_budget_ms": 200.0,
        "latency_percentile": 95.0,
        "max_memory_mb": 900.0,
    }
    assert spec.search_options()["objective"] == "throughput"  # the rebench kit keeps it
    assert job_from_json(job_to_json(spec)) == spec  # crosses to the job's process


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        # The file's shape (pydantic) names the field by its place in the file...
        ({"batch_sizes": []}, "jobs[0].batch_sizes=[] is invalid: Value should have at least 1"),
        ({"batch_sizes": [0]}, "jobs[0].batch_sizes[0]=0 is invalid: Input should be greater"),
        ({"latency_budget_ms": "soon"}, "jobs[0].latency_budget_ms='soon' is invalid"),
        # ...and the values optimize_model refuses name the job.
        ({"objective": "cost"}, "sweep job j: objective='cost' needs prices"),
        ({"objective": "latency", "concurrency": [2]}, "sweep job j: batch_sizes and concurrency"),
    ],
)
def test_bad_objective_settings_in_a_sweep_file_are_refused_naming_where(
    tmp_path, setting, message
):
    job = {"name": "j", "model": "m.onnx", "inputs": "x.npz", "objective": "throughput"}
    with pytest.raises(InputError) as info:
        plan_from_mapping({"jobs": [{**job, **setting}]}, tmp_path)
    assert message in str(info.value)


def test_one_load_point_in_a_sweep_file_is_a_list_of_one(tmp_path):
    job = {"name": "j", "model": "m.onnx", "inputs": "x.npz", "objective": "throughput"}
    (spec,) = plan_from_mapping({"jobs": [{**job, "batch_sizes": 8}]}, tmp_path).jobs
    assert spec.batch_sizes == (8,) and spec.concurrency == ()


def test_the_command_line_gives_the_same_settings():
    args = build_parser().parse_args(
        [
            "optimize",
            "m",
            "--inputs",
            "t",
            "--objective",
            "throughput",
            "--batch-sizes",
            "1,8,32",
            "--concurrency",
            "1,2",
            "--latency-budget-ms",
            "200",
        ]
    )
    spec = JobSpec("m", Path("m"), Path("t"), **objective_settings(args))
    assert spec.serving()["batch_sizes"] == [1, 8, 32] and spec.concurrency == (1, 2)
    spec.validate()
    plain = build_parser().parse_args(["optimize", "m", "--inputs", "t"])
    assert (
        JobSpec("m", Path("m"), Path("t"), **objective_settings(plain)).serving()["objective"]
        == "latency"
    )


def test_the_command_line_refuses_a_list_that_is_not_numbers(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["optimize", "m", "--inputs", "t", "--batch-sizes", "eight"])
    assert "expected whole numbers separated by commas" in capsys.readouterr().err
