"""The shared ONNX export: made once, written once per node, used as the trial's source."""

from dataclasses import replace
from pathlib import Path

import pytest

from speedster_dist.cache import CACHE_ENV
from speedster_dist.records import BackendInfo, Candidate, Capability, DeviceKind, Precision
from speedster_dist.runtime import TrialPayload
from speedster_dist.runtime._shared_export import (
    SharedExport,
    consumes_onnx,
    make_shared_export,
    use_shared_export,
)
from speedster_dist.runtime._task import trial_task
from speedster_dist.testing.backend_contract import contract_payload

from .conftest import FAKE_HW, FAST


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
    assert path == cache / "shared-onnx" / export.key / "files" / "model.onnx"  # an entry
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


def test_a_damaged_shared_export_is_passed_over_never_deleted_under_a_reader(payload, cache):
    export = make_shared_export(payload)
    first = Path(use_shared_export(payload, export).source.onnx_path or "")
    first.write_bytes(b"damaged")  # bytes changed after publishing (or a planted entry)
    second = Path(use_shared_export(payload, export).source.onnx_path or "")
    assert second != first and second.read_bytes() == export.files["model.onnx"]
    assert first.read_bytes() == b"damaged"  # left in place: a reader may hold it open


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


def test_a_trial_fusing_the_shared_export_leaves_its_neighbours_files_in_place(cache, tmp_path):
    # Issue 20, item 5: the fused graph was written beside the shared export, so the next
    # trial found the folder "not intact", deleted it and wrote it again, while a neighbour
    # trial still held the fused path (ONNX Runtime: NO_SUCHFILE). The same sequence, in order:
    import onnxruntime as ort

    from speedster_dist.backends._onnx import optimize_transformer

    bert = contract_payload("bert", 0.01, FAST)
    export = make_shared_export(bert)
    held_by_b = _onnx_path(use_shared_export(bert, export))  # trial B starts
    used_by_a = _onnx_path(use_shared_export(bert, export))  # trial A fuses it
    assert optimize_transformer(used_by_a, tmp_path / "a.onnx", bert.source.hf_config)
    # Trial D fuses too: it gets the fused graph A cached, in its own cache entry.
    fused = optimize_transformer(used_by_a, tmp_path / "d.onnx", bert.source.hf_config)
    assert fused is not None
    written = held_by_b.stat().st_ino

    again = use_shared_export(bert, export)  # trial C starts on the same node

    assert _onnx_path(again) == held_by_b
    assert held_by_b.stat().st_ino == written, "the shared export was deleted and rewritten"
    options = ort.SessionOptions()
    for path in (fused, held_by_b):  # D opens its fused graph, B its export: both still there
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    # Each cache keeps to its own folder: the fused graph in its entry, the export as sent.
    assert fused.is_relative_to(cache / "fused")
    assert sorted(p.name for p in held_by_b.parent.iterdir()) == sorted(export.files)


def _onnx_path(payload: TrialPayload) -> Path:
    assert payload.source.onnx_path is not None
    return Path(payload.source.onnx_path)
