"""The shared ONNX export: made once, written once per node, used as the trial's source."""

from dataclasses import replace
from pathlib import Path

import pytest

from speedster_dist.cache import CACHE_ENV
from speedster_dist.records import BackendInfo, Candidate, Capability, DeviceKind, Precision
from speedster_dist.runtime._shared_export import (
    SharedExport,
    consumes_onnx,
    make_shared_export,
    use_shared_export,
)
from speedster_dist.runtime._task import trial_task

from .conftest import FAKE_HW


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_an_export_is_shared_as_files_and_becomes_the_trials_onnx_source(payload, cache):
    export = make_shared_export(payload)
    assert export.ok and export.main == "model.onnx" and not export.error
    assert len(export.files["model.onnx"]) > 1000  # the MLP's graph and weights
    assert make_shared_export(payload).key == export.key  # content-addressed

    shared = use_shared_export(payload, export)
    assert shared.source.onnx_path is not None
    path = Path(shared.source.onnx_path)
    assert path == cache / "shared-onnx" / export.key / "model.onnx"
    assert path.read_bytes() == export.files["model.onnx"]
    assert shared.source.module is payload.source.module  # still a torch source
    assert payload.source.onnx_path is None  # the caller's payload is left alone
    before = path.stat().st_mtime_ns
    use_shared_export(payload, export)  # a second trial on this node: written once
    assert path.stat().st_mtime_ns == before

    result, saved = trial_task(
        payload,
        export,
        Candidate.make("onnxruntime", "fp32", FAKE_HW.key),
        FAKE_HW,
        "n",
        False,
        None,
    )
    assert result.ok, result.reason
    assert dict(result.extra)["onnx_export"] == f"shared:{export.key}"
    assert 0 < result.started_at < result.finished_at and saved is not None


def test_a_failed_export_is_recorded_not_raised_and_trials_go_on_without_it(payload):
    broken = replace(payload, source=replace(payload.source, module=None))
    export = make_shared_export(broken)
    assert not export.ok and "neither a torch module nor an ONNX file" in export.error
    assert use_shared_export(payload, export) is payload
    assert use_shared_export(payload, None) is payload


def test_only_backends_that_accept_onnx_consume_the_export():
    def info(*sources):
        cap = Capability(DeviceKind.CPU, Precision.FP32, "", frozenset(), frozenset(sources))
        return BackendInfo("b", (cap,))

    assert consumes_onnx(info("torch", "onnx"))
    assert not consumes_onnx(info("torch"))
    assert not SharedExport("").ok
