"""The nightly re-benchmark re-signs only what verifies: a learner (or its rebench kit)
changed after signing is refused before anything is measured, and a file changed while
the night's search runs is refused at the re-save, never re-signed."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from speedster_dist import api, load_model
from speedster_dist.artifacts import (
    KIT_FILE,
    ArtifactError,
    InputSource,
    LearnerIO,
    Manifest,
    ModelSource,
    WinnerEntry,
    read_kit,
    save_learner,
    sha256_file,
    write_kit,
)
from speedster_dist.backends import BuildConfig, get_backend
from speedster_dist.fleet import JobSpec, NightlySettings, rebench_learner, run_job
from speedster_dist.hardware import local_cpu
from speedster_dist.learner import HardwareKeyedLearner
from speedster_dist.modelio import OutputSpec, make_source_model
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.runtime import InlineExecutor, save_compiled
from speedster_dist.testing.models import tiny_mlp
from speedster_dist.testing.registry import use_backends

pytest.importorskip("onnxruntime")

KEY = "the platform team's nightly secret"
LOCAL = local_cpu()
OTHER = replace(LOCAL, key="cpu-other")  # not in tonight's cluster: this machine is searched
ONLY_FAKES = ["torchscript", "torch_compile", "onnxruntime", "openvino", "tensorrt", "fake_deadly"]


@pytest.fixture(autouse=True)
def _fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    use_backends(monkeypatch)
    monkeypatch.delenv("SPEEDSTER_DIST_SIGNING_KEY", raising=False)
    monkeypatch.delenv("SPEEDSTER_DIST_VERIFY_KEY", raising=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A learner signed with KEY: an ONNX winner for OTHER, and its kit (a TorchScript
    model of the same MLP, 8 rows of inputs), the kit's digest in the signed manifest."""
    work = tmp_path_factory.mktemp("built")
    model = tiny_mlp()
    rows = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    torch.jit.trace(model, rows[:1]).save(str(work / "model.pt"))
    np.savez(work / "inputs.npz", rows.numpy())
    source, _ = make_source_model(model, ("input_0",), [(rows[:1],)], False)
    config = BuildConfig(Precision.FP32, DeviceKind.CPU)
    compiled = get_backend("onnxruntime").build(source, [], config, work / "build")
    (work / "saved").mkdir()
    saved = save_compiled(compiled, "onnxruntime", DeviceKind.CPU, work / "saved")
    out = work / "learner"
    options = {"ignore_compilers": ONLY_FAKES, "searcher": "exhaustive", "metric_drop_ths": 0.05}
    kit = write_kit(
        out,
        "tiny",
        ModelSource(work / "model.pt", "torchscript"),
        InputSource(work / "inputs.npz"),
        options,
    )
    io = LearnerIO(("input_0",), False, OutputSpec("tensor", ("output_0",)))
    entry = WinnerEntry(OTHER, "onnxruntime", "fp32", "", {}, {}, saved)
    digest = sha256_file(kit / KIT_FILE)
    save_learner(out, io, {OTHER.key: entry}, saved, KEY, kit_sha256=digest)
    return out


@pytest.fixture
def learner(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "learner"))


def _settings(tmp_path: Path, **kw: Any) -> NightlySettings:
    return NightlySettings(tmp_path / "history", "night-1", quick=True, trust_code=True, **kw)


def _tamper_consistently(path: Path) -> None:
    """A model file changed and its checksum changed to match: only a signature sees it."""
    manifest = json.loads((path / "manifest.json").read_text())
    raw = manifest["entries"][OTHER.key]
    name = raw["options"]["file"]
    data = (path / raw["folder"] / name).read_bytes() + b"\x00"
    (path / raw["folder"] / name).write_bytes(data)
    raw["files"][name] = hashlib.sha256(data).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_a_verified_learner_gains_winners_and_stays_signed_with_its_kit(learner, tmp_path):
    before = Manifest.read(learner, KEY).kit_sha256
    report = rebench_learner("tiny", learner, InlineExecutor, _settings(tmp_path, signing_key=KEY))
    assert report.added == [LOCAL.key]
    meta = Manifest.read(learner, KEY)  # re-signed, and it verifies
    assert sorted(meta.hardware_types()) == sorted([OTHER.key, LOCAL.key])
    assert meta.kit_sha256 == before  # the signature still covers the same kit
    assert read_kit(learner, meta.kit_sha256).model_name == "tiny"
    assert load_model(learner, hardware_key=LOCAL.key, verify_key=KEY, trust_code=True)


def test_the_night_confirms_the_winners_of_a_new_hardware_type(learner, tmp_path, monkeypatch):
    import speedster_dist.runtime._confirm as confirm_module
    from speedster_dist.results import read_history

    # This shared test machine is always busy: the load check has its own tests.
    monkeypatch.setattr(confirm_module, "overloaded", lambda *args: "")
    settings = _settings(tmp_path, signing_key=KEY)
    assert rebench_learner("tiny", learner, InlineExecutor, settings).added == [LOCAL.key]
    rows = read_history(tmp_path / "history").to_pylist()
    confirmed = [r for r in rows if r["role"] == "confirmed"]
    # The baseline and the winner re-timed side by side, for the new type only.
    assert len(confirmed) >= 2 and {r["hardware_type"] for r in confirmed} == {LOCAL.key}
    assert any(r["is_baseline"] for r in confirmed)


@pytest.mark.parametrize("by", ["settings", "variable"])
def test_a_tampered_learner_is_refused_never_re_signed(learner, tmp_path, monkeypatch, by):
    _tamper_consistently(learner)
    tampered = (learner / "manifest.json").read_bytes()
    settings = _settings(tmp_path, signing_key=KEY if by == "settings" else None)
    if by == "variable":  # only the signing key is set: its own verify key checks first
        monkeypatch.setenv("SPEEDSTER_DIST_SIGNING_KEY", KEY)
    with pytest.raises(ArtifactError, match=r"does not match.*re-signs only learners that"):
        rebench_learner("tiny", learner, InlineExecutor, settings)
    assert (learner / "manifest.json").read_bytes() == tampered  # untouched, not re-signed
    assert not (tmp_path / "history").exists()  # refused before anything was measured


def test_a_tampered_kit_is_refused(learner, tmp_path):
    kit = learner / "rebench"
    raw = json.loads((kit / KIT_FILE).read_text())
    (kit / "inputs.npz").write_bytes((kit / "inputs.npz").read_bytes() + b"\x00")
    raw["files"]["inputs.npz"] = sha256_file(kit / "inputs.npz")  # the kit's own checksum
    (kit / KIT_FILE).write_text(json.dumps(raw))
    settings = _settings(tmp_path, verify_key=KEY)
    with pytest.raises(ArtifactError, match="not the one saved with the learner"):
        rebench_learner("tiny", learner, InlineExecutor, settings)


def test_an_unsigned_learner_is_not_signed_by_the_night(learner, tmp_path):
    meta = Manifest.read(learner)
    save_learner(
        learner, meta.io(), meta.entries(), meta.portable(), kit_sha256=meta.kit_sha256
    )  # the same learner, unsigned: nobody can say it was not changed
    with pytest.raises(ArtifactError, match="not signed"):
        rebench_learner("tiny", learner, InlineExecutor, _settings(tmp_path, signing_key=KEY))
    assert "signature" not in json.loads((learner / "manifest.json").read_text())


def test_a_signed_learner_is_not_searched_without_the_signing_key(learner, tmp_path):
    with pytest.raises(ArtifactError, match="needs the signing key"):
        rebench_learner("tiny", learner, InlineExecutor, _settings(tmp_path, verify_key=KEY))


class _TamperingExecutor(InlineExecutor):
    """Runs trials as InlineExecutor does, and changes the learner (a file and its checksum,
    consistently) while the night's search runs."""

    target: Path

    def poll(self, timeout_s: float) -> Any:
        if (self.target / "manifest.json").read_bytes().count(b"signature"):
            _tamper_consistently(self.target)
            manifest = json.loads((self.target / "manifest.json").read_text())
            del manifest["signature"]
            (self.target / "manifest.json").write_text(json.dumps(manifest))
        return super().poll(timeout_s)


def test_files_changed_during_the_search_are_refused_at_the_re_save(learner, tmp_path):
    _TamperingExecutor.target = learner
    settings = _settings(tmp_path, signing_key=KEY)
    with pytest.raises(ArtifactError, match=r"not re-saved.*does not match its checksum"):
        rebench_learner("tiny", learner, _TamperingExecutor, settings)
    with pytest.raises(ArtifactError, match="not signed"):  # the attacker's, not re-signed
        Manifest.read(learner, KEY)
    folders = {p.name for p in learner.iterdir() if p.is_dir()}
    assert LOCAL.key not in folders  # the interrupted save removed what it wrote


def test_optimize_out_signs_the_learner_over_its_kit(built, bert_dir, tmp_path, monkeypatch):
    """`speedster-dist optimize --out` (run_job): the kit is written first and its digest
    is in the manifest the signing key signs, so that a changed kit is refused later."""
    meta = Manifest.read(built, KEY)
    searched = HardwareKeyedLearner(meta.io(), meta.entries(), portable=meta.portable())
    monkeypatch.setattr(api, "optimize_model", lambda model, data, **kw: searched)
    monkeypatch.setenv("SPEEDSTER_DIST_SIGNING_KEY", KEY)
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps([f"text {i}" for i in range(6)]))
    out = tmp_path / "out"
    run_job(JobSpec(name="bert", model=bert_dir, inputs=texts, out=out), None, progress=False)
    saved = Manifest.read(out, KEY)
    assert saved.kit_sha256 == sha256_file(out / "rebench" / KIT_FILE)
    assert read_kit(out, saved.kit_sha256).model.kind == "hf"
    (out / "rebench" / "model" / "extra.safetensors").write_bytes(b"planted")
    with pytest.raises(ArtifactError, match=r"does not list.*extra.safetensors"):
        read_kit(out, saved.kit_sha256)
