"""A saved learner as an attacker would hand it over: every case is a real learner saved
through the public API, then tampered with. Loading must refuse it with ArtifactError,
write nothing outside the artifact and its private copy, and run nothing it was not
allowed to run."""

from __future__ import annotations

import gc
import io
import json
import os
import pickle
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from speedster_dist import load_model
from speedster_dist.artifacts import ArtifactError, LearnerIO, Manifest, WinnerEntry
from speedster_dist.backends import BuildConfig, get_backend
from speedster_dist.backends.torch_compile import export_module
from speedster_dist.cache import CACHE_ENV
from speedster_dist.hardware import local_cpu
from speedster_dist.learner import HardwareKeyedLearner
from speedster_dist.modelio import OutputSpec
from speedster_dist.records import DeviceKind, Precision, SavedCandidate
from speedster_dist.runtime import save_compiled
from speedster_dist.testing.backend_contract import ContractModel, contract_model

pytest.importorskip("onnxruntime")

LOCAL = local_cpu()
OTHER = replace(LOCAL, key="cpu-other")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def mlp() -> ContractModel:
    return contract_model("mlp")


def _saved(mlp: ContractModel, backend: str, work: Path) -> SavedCandidate:
    config = BuildConfig(Precision.FP32, DeviceKind.CPU)
    compiled = get_backend(backend).build(mlp.source, [], config, work / "build")
    (work / "out").mkdir(parents=True)
    return save_compiled(compiled, backend, DeviceKind.CPU, work / "out")


def _entry(hardware: Any, saved: SavedCandidate) -> WinnerEntry:
    return WinnerEntry(hardware, saved.backend, "fp32", "", {}, {}, saved)


@pytest.fixture
def artifact(mlp: ContractModel, tmp_path: Path) -> Path:
    """An ONNX winner for this machine, a TorchScript winner for another, an ONNX fallback."""
    onnx = _saved(mlp, "onnxruntime", tmp_path / "w1")
    script = _saved(mlp, "torch", tmp_path / "w2")
    io_ = LearnerIO(mlp.source.input_names, False, OutputSpec("tensor", ("output_0",)))
    entries = {LOCAL.key: _entry(LOCAL, onnx), OTHER.key: _entry(OTHER, script)}
    learner = HardwareKeyedLearner(io_, entries, portable=onnx)
    return learner.save(tmp_path / "artifact")


def _manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text())


def _write(path: Path, manifest: dict[str, Any]) -> None:
    (path / "manifest.json").write_text(json.dumps(manifest))


def _entry_raw(manifest: dict[str, Any], key: str = "") -> dict[str, Any]:
    raw: dict[str, Any] = manifest["entries"][key or LOCAL.key]
    return raw


def _scratch_left(cache: Path) -> list[str]:
    gc.collect()
    scratch = cache / "scratch"
    return sorted(p.name for p in scratch.iterdir()) if scratch.exists() else []


def test_the_untampered_artifact_loads_without_any_opt_in(artifact: Path, mlp: ContractModel):
    learner = load_model(artifact)
    x = mlp.validation[0][0]
    torch.testing.assert_close(learner(x), mlp.source.module(x)[0])  # type: ignore[misc]


def test_a_name_through_a_planted_link_cannot_write_outside(artifact: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (artifact / "a" / "b" / "c").mkdir(parents=True)
    os.symlink(artifact / "a" / "b" / "c", artifact / "L")
    manifest = _manifest(artifact)
    raw = _entry_raw(manifest)
    name = next(iter(raw["files"]))
    raw["files"] = {"L/../../../../outside/x": raw["files"][name]}
    raw["options"]["file"] = "L/../../../../outside/x"
    _write(artifact, manifest)
    with pytest.raises(ArtifactError, match=r"symbolic link|plain relative path"):
        load_model(artifact)
    assert not list(outside.iterdir())


@pytest.mark.parametrize("name", ["../x.onnx", "/etc/passwd", "a/../../x", "a\\b", "", "a//b"])
def test_names_must_be_plain_relative_paths(artifact: Path, name: str):
    manifest = _manifest(artifact)
    raw = _entry_raw(manifest)
    raw["files"] = {name: next(iter(raw["files"].values()))}
    _write(artifact, manifest)
    with pytest.raises(ArtifactError, match=r"plain relative path|non-empty"):
        Manifest.read(artifact)


def test_a_link_anywhere_in_the_artifact_is_refused(artifact: Path):
    (artifact / "rebench").mkdir()
    os.symlink("/etc/hostname", artifact / "rebench" / "notes.txt")
    with pytest.raises(ArtifactError, match="symbolic links"):
        Manifest.read(artifact)


def test_a_model_file_replaced_by_a_link_is_refused_even_with_its_checksum(artifact: Path):
    target = Path("/etc/hostname")
    if not target.is_file():
        pytest.skip("needs a readable file outside the artifact")
    manifest = _manifest(artifact)
    raw = _entry_raw(manifest)
    folder = artifact / raw["folder"]
    (folder / raw["options"]["file"]).unlink()
    os.symlink(target, folder / raw["options"]["file"])
    import hashlib

    raw["files"][raw["options"]["file"]] = hashlib.sha256(target.read_bytes()).hexdigest()
    _write(artifact, manifest)
    with pytest.raises(ArtifactError, match="symbolic links"):
        load_model(artifact)


def test_programs_load_only_with_trust_code(artifact: Path, mlp: ContractModel):
    with pytest.raises(ArtifactError, match="trust_code=True"):
        load_model(artifact, hardware_key=OTHER.key)
    learner = load_model(artifact, hardware_key=OTHER.key, trust_code=True)
    x = mlp.validation[0][0]
    torch.testing.assert_close(learner(x), mlp.source.module(x)[0])  # type: ignore[misc]


@pytest.mark.parametrize("value", ["/etc/passwd", "../_portable/model.onnx", "other.onnx", 7])
def test_file_options_may_only_name_listed_files(artifact: Path, value: Any):
    manifest = _manifest(artifact)
    _entry_raw(manifest)["options"]["file"] = value
    _write(artifact, manifest)
    with pytest.raises(ArtifactError, match="listed files"):
        load_model(artifact)


@pytest.mark.parametrize("dtype", ["nn", "load", "os.system", 3])
def test_dtypes_come_from_an_allow_list(artifact: Path, dtype: Any):
    manifest = _manifest(artifact)
    _entry_raw(manifest, OTHER.key)["options"]["dtype"] = dtype
    _write(artifact, manifest)
    with pytest.raises(ArtifactError, match="unknown dtype"):
        load_model(artifact, hardware_key=OTHER.key, trust_code=True)


@pytest.mark.parametrize(
    "options", [{"intra_op_threads": "999999999"}, {"tensorrt": "yes"}, {"intra_op_threads": -1}]
)
def test_runtime_options_are_validated(artifact: Path, options: dict[str, Any]):
    manifest = _manifest(artifact)
    _entry_raw(manifest)["options"].update(options)
    _write(artifact, manifest)
    with pytest.raises(ArtifactError, match="not valid"):
        load_model(artifact)


def test_onnx_external_data_outside_the_model_folder_is_refused(artifact: Path):
    import hashlib

    import onnx
    from onnx import external_data_helper

    manifest = _manifest(artifact)
    raw = _entry_raw(manifest)
    path = artifact / raw["folder"] / raw["options"]["file"]
    model = onnx.load(str(path))
    tensor = model.graph.initializer[0]
    external_data_helper.set_external_data(tensor, location="../../../../../etc/hostname")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    data = model.SerializeToString()
    path.write_bytes(data)
    raw["files"][raw["options"]["file"]] = hashlib.sha256(data).hexdigest()
    _write(artifact, manifest)
    with pytest.raises(ArtifactError, match="outside the model's folder"):
        load_model(artifact)


class _Payload:
    """A pickle that would create ``marker`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


def _export_archive(mlp: ContractModel, path: Path) -> bytes:
    sample = tuple(t.repeat(2, 1) for t in mlp.source.example_inputs)
    program = export_module(mlp.source.module, mlp.source, sample)  # type: ignore[arg-type]
    program.example_inputs = None
    torch.export.save(program, str(path))
    return path.read_bytes()


def test_a_crafted_export_archive_runs_nothing_even_with_trust_code(
    artifact: Path, mlp: ContractModel, tmp_path: Path
):
    import hashlib

    marker = tmp_path / "pwned"
    archive = _export_archive(mlp, tmp_path / "clean.pt2")
    crafted = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as clean, zipfile.ZipFile(crafted, "w") as out:
        prefix = clean.namelist()[0].split("/")[0]
        for info in clean.infolist():
            out.writestr(info, clean.read(info))
        out.writestr(f"{prefix}/data/weights/model.pt", pickle.dumps(_Payload(marker)))
    data = crafted.getvalue()
    manifest = _manifest(artifact)
    raw = _entry_raw(manifest, OTHER.key)
    folder = artifact / raw["folder"]
    (folder / "model.pt2").write_bytes(data)
    raw.update(
        backend="torch_compile",
        files={"model.pt2": hashlib.sha256(data).hexdigest()},
        options={"file": "model.pt2", "format": "torch.export", "mode": "default", "dtype": ""},
    )
    _write(artifact, manifest)
    with pytest.raises(ArtifactError, match="unexpected member"):
        load_model(artifact, hardware_key=OTHER.key, trust_code=True)
    assert not marker.exists()


def test_only_the_selected_entry_is_read(artifact: Path):
    manifest = _manifest(artifact)
    raw = _entry_raw(manifest, OTHER.key)
    (artifact / raw["folder"] / raw["options"]["file"]).write_bytes(b"garbage")
    assert load_model(artifact).selection.key == LOCAL.key  # type: ignore[union-attr]
    with pytest.raises(ArtifactError, match="checksum"):
        load_model(artifact, hardware_key=OTHER.key, trust_code=True)


def test_nothing_is_left_behind_once_the_learner_is_gone(artifact: Path, _private_cache: Path):
    learner = load_model(artifact)
    assert len(_scratch_left(_private_cache)) == 1  # the private copy of the running entry
    del learner
    assert _scratch_left(_private_cache) == []


def test_a_save_never_writes_through_a_planted_link(artifact: Path, tmp_path: Path):
    # The nightly re-save: links planted (after the learner was read) where the save puts
    # its folders. Each folder is created afresh, never through what is already there.
    meta = Manifest.read(artifact)
    learner = HardwareKeyedLearner(meta.io(), meta.entries(), portable=meta.portable())
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = tmp_path / "resaved"
    target.mkdir()
    for name in (LOCAL.key, OTHER.key, "_portable"):
        os.symlink(outside / name, target / name)  # dangling: mkdir would follow nothing
    learner.save(target)
    assert not list(outside.iterdir())
    folders = {raw["folder"] for raw in _manifest(target)["entries"].values()}
    assert not folders & {LOCAL.key, OTHER.key}
