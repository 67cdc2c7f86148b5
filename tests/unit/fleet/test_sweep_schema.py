"""The sweep file's shape (fleet/_sweep_schema.py): strict types that name the field, one
string as a one-item name list, unknown keys refused with the closest known one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from speedster_dist.errors import InputError
from speedster_dist.fleet import plan_from_mapping

BASE = Path("/sweeps")


def plan(text: str):
    return plan_from_mapping(yaml.safe_load(text), BASE, "s.yaml")


def refusal(text: str) -> str:
    with pytest.raises(InputError) as info:
        plan(text)
    message = str(info.value)
    assert message.startswith("s.yaml"), message  # names the file...
    return message


JOB = "{model: m.onnx, inputs: x.npz"


def test_a_quoted_boolean_is_text_and_is_refused_naming_its_field():
    message = refusal(f"jobs: [{JOB}, kit: 'false'}}]")
    assert "jobs[0].kit='false' is invalid" in message  # ... and the field, in its place
    assert "give true or false, unquoted" in message
    (spec,) = plan(f"jobs: [{JOB}, kit: false}}]").jobs
    assert spec.kit is False
    message = refusal(f"jobs: [{JOB}, settings: [{{name: a, resume: 'yes'}}]}}]")
    assert "jobs[0].settings[0].resume='yes' is invalid" in message


def test_one_name_is_a_one_item_list_never_its_letters():
    text = f"defaults: {{ignore_compressors: int8}}\njobs: [{JOB}, ignore_compilers: tensorrt}}]"
    (spec,) = plan(text).jobs
    assert spec.ignore_compilers == ("tensorrt",) and spec.ignore_compressors == ("int8",)
    (spec,) = plan(f"jobs: [{JOB}, ignore_compilers: [tensorrt, openvino]}}]").jobs
    assert spec.ignore_compilers == ("tensorrt", "openvino")
    assert "jobs[0].ignore_compilers=5 is invalid" in refusal(
        f"jobs: [{JOB}, ignore_compilers: 5}}]"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"jobs: [{JOB}, metric_drop_th: 0.1}}]",
            "jobs[0]: unknown setting 'metric_drop_th': did you mean 'metric_drop_ths'?",
        ),
        (
            f"defaults: {{kti: false}}\njobs: [{JOB}}}]",
            "defaults: unknown setting 'kti': did you mean 'kit'?",
        ),
        (
            f"jobs: [{JOB}, settings: [{{nmae: a}}]}}]",
            "jobs[0].settings[0]: unknown setting 'nmae': did you mean 'name'?",
        ),
        (
            f"concurency: 2\njobs: [{JOB}}}]",
            "unknown key 'concurency': did you mean 'concurrency'?",
        ),
        (
            f"jobs: [{JOB}, zzz: 1}}]",
            "unknown setting 'zzz': allowed: batch_size, batch_sizes, concurrency, device,",
        ),
    ],
)
def test_unknown_keys_are_refused_with_the_closest_known_one(text, expected):
    assert expected in refusal(text)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("max_length: '64'", "jobs[0].max_length='64' is invalid: Input should be a valid integer"),
        ("batch_size: 0", "jobs[0].batch_size=0 is invalid"),
        ("metric_drop_ths: true", "jobs[0].metric_drop_ths=True is invalid"),
        ("optimization_time: true", "give constrained, unconstrained or a number of seconds"),
        ("name: 5", "jobs[0].name=5 is invalid: Input should be a valid string (give it as text"),
        ("study_storage: 5", "give it as text"),
    ],
)
def test_types_are_strict_and_the_error_names_the_field(setting, expected):
    assert expected in refusal(f"jobs: [{JOB}, {setting}}}]")


def test_values_keep_their_types_and_every_error_is_listed_at_once():
    (spec,) = plan(f"jobs: [{JOB}, optimization_time: 60, trial_timeout: 30}}]").jobs
    assert spec.optimization_time == 60.0 and spec.trial_timeout == 30.0
    (spec,) = plan(f"jobs: [{JOB}, optimization_time: unconstrained}}]").jobs
    assert spec.optimization_time == "unconstrained"
    message = refusal(f"concurrency: 0\njobs: [{JOB}, kit: 1, resum: true}}]")
    lines = message.splitlines()[1:]
    assert len(lines) == 3 and all(line.startswith("  - ") for line in lines)
    assert "concurrency=0" in message and "jobs[0].kit=1" in message and "'resume'" in message


def test_the_schema_has_every_setting_a_job_takes():
    from speedster_dist.fleet import JOB_OPTIONS
    from speedster_dist.fleet._sweep_schema import JobFile, JobSettings

    assert set(JobSettings.model_fields) == JOB_OPTIONS - {"out", "model", "inputs"}
    assert set(JobFile.model_fields) - set(JobSettings.model_fields) == {
        "name",
        "model",
        "inputs",
        "settings",
    }
