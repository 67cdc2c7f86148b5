import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from speedster_dist import LearnerMetadata, load_model
from speedster_dist.artifacts import ArtifactError, LearnerIO, WinnerEntry, select_entry
from speedster_dist.backends import BuildConfig, get_backend
from speedster_dist.hardware import local_hardware
from speedster_dist.learner import HardwareKeyedLearner
from speedster_dist.modelio import OutputSpec
from speedster_dist.records import DeviceKind, HardwareType, Precision
from speedster_dist.runtime import save_compiled as _save
from speedster_dist.testing.backend_contract import contract_model


def _local_cpu() -> HardwareType:
    hardware = local_hardware(DeviceKind.CPU)
    assert hardware is not None  # every machine has a CPU hardware type
    return hardware


LOCAL = _local_cpu()


def _entry(tmp_path, hardware=LOCAL, kind="bert"):
    model = contract_model(kind)
    compiled = get_backend("torch").build(
        model.source, [], BuildConfig(Precision.FP32, DeviceKind.CPU), tmp_path
    )
    work = tmp_path / f"w-{hardware.key}"
    work.mkdir()
    saved = _save(compiled, "torch", DeviceKind.CPU, work)
    return model, WinnerEntry(hardware, "torch", "fp32", "", {}, {"latency_p50_s": 0.001}, saved)


@pytest.fixture
def bert_learner(tmp_path):
    model, entry = _entry(tmp_path)
    from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions as Out

    spec = OutputSpec(
        "model_output", model.source.output_names, f"{Out.__module__}:{Out.__qualname__}"
    )
    io = LearnerIO(model.source.input_names, True, spec)
    return model, HardwareKeyedLearner(io, {LOCAL.key: entry})


def test_called_like_the_original_and_returns_its_output_class(bert_learner):
    model, learner = bert_learner
    sample = dict(zip(model.source.input_names, model.validation[0], strict=True))
    out = learner(**sample)
    assert type(out).__name__ == "BaseModelOutputWithPoolingAndCrossAttentions"
    with torch.inference_mode():
        ref = model.source.module.model(**sample)
    torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state)
    torch.testing.assert_close(learner(*model.validation[0]).pooler_output, ref.pooler_output)
    with pytest.raises(TypeError, match="missing inputs"):
        learner(input_ids=sample["input_ids"])
    with pytest.raises(TypeError, match="unexpected input"):
        learner(**sample, pixel_values=torch.ones(1))


def test_save_then_load_in_a_fresh_process(bert_learner, tmp_path):
    model, learner = bert_learner
    path = learner.save(tmp_path / "artifact")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "speedster-dist-learner"
    assert list(manifest["entries"]) == [LOCAL.key]
    sample = model.validation[0]
    torch.save(
        {n: t for n, t in zip(model.source.input_names, sample, strict=True)}, tmp_path / "in.pt"
    )
    expected = learner(*sample).last_hidden_state
    script = (
        "import sys, torch, speedster_dist\n"
        "meta = speedster_dist.LearnerMetadata.read(sys.argv[1])\n"
        "l = meta.load_model(sys.argv[1], trust_code=True)\n"
        "out = l(**torch.load(sys.argv[2]))\n"
        "print(type(out).__name__); torch.save(out.last_hidden_state, sys.argv[3])\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(path),
            str(tmp_path / "in.pt"),
            str(tmp_path / "out.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "BaseModelOutputWithPoolingAndCrossAttentions" in proc.stdout
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected)


def test_tampered_file_is_refused(bert_learner, tmp_path):
    _, learner = bert_learner
    path = learner.save(tmp_path / "artifact")
    model_file = next(p for p in path.rglob("*.pt"))
    model_file.write_bytes(model_file.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ArtifactError, match="checksum"):
        load_model(path, trust_code=True)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda m: "{not json", "corrupt"),
        (lambda m: json.dumps({**m, "format": "other"}), "not a speedster-dist"),
        (lambda m: json.dumps({**m, "version": 99}), "format version 99"),
        (lambda m: json.dumps({**m, "entries": {}}), "no winner"),
        (
            lambda m: json.dumps(
                {
                    **m,
                    "entries": {k: {**v, "backend": "os.system"} for k, v in m["entries"].items()},
                }
            ),
            "unknown backend",
        ),
        (
            lambda m: json.dumps(
                {**m, "entries": {k: {**v, "folder": "../.."} for k, v in m["entries"].items()}}
            ),
            "outside",
        ),
    ],
)
def test_corrupt_manifest_gives_a_clear_error(bert_learner, tmp_path, damage, message):
    _, learner = bert_learner
    path = learner.save(tmp_path / "artifact")
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(damage(manifest))
    with pytest.raises(ArtifactError, match=message):
        LearnerMetadata.read(path).load_model(path, trust_code=True)


def test_missing_artifact_and_missing_file(bert_learner, tmp_path):
    with pytest.raises(ArtifactError, match=r"manifest\.json is missing"):
        load_model(tmp_path / "nothing")
    _, learner = bert_learner
    path = learner.save(tmp_path / "artifact")
    next(p for p in path.rglob("*.pt")).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_model(path, trust_code=True)


def test_output_class_is_only_resolved_from_transformers():
    from speedster_dist.modelio import resolve_output_class

    assert resolve_output_class("os:system") is None
    output_class = resolve_output_class("transformers.modeling_outputs:BaseModelOutput")
    assert output_class is not None and output_class.__name__ == "BaseModelOutput"
    assert resolve_output_class("transformers.utils:is_torch_available") is None


def test_selection_prefers_own_type_then_compatible_with_a_message(tmp_path):
    _, own = _entry(tmp_path, LOCAL, kind="mlp")
    weaker = replace(LOCAL, key="cpu-older", features=frozenset())
    # A feature no real CPU has: this machine can never run "cpu-newer", whatever it is.
    stronger = replace(LOCAL, key="cpu-newer", features=LOCAL.features | {"made_up_isa"})
    _, older = _entry(tmp_path, weaker, kind="mlp")
    _, newer = _entry(tmp_path, stronger, kind="mlp")
    assert select_entry({LOCAL.key: own, "cpu-older": older}, None, [LOCAL]).key == LOCAL.key
    chosen = select_entry({"cpu-older": older, "cpu-newer": newer}, None, [LOCAL])
    assert (chosen.key, chosen.how) == ("cpu-older", "compatible")
    assert "cpu-older" in chosen.message
    learner = HardwareKeyedLearner(
        LearnerIO(("x",), False, OutputSpec("tensor", ("output_0",))),
        {"cpu-older": older, "cpu-newer": newer},
    )
    with pytest.warns(UserWarning, match="cpu-older"):
        learner.for_hardware()
    gpu = HardwareType("gpu-x", DeviceKind.GPU)
    with pytest.raises(ArtifactError, match="none can run"):
        select_entry({"cpu-newer": newer, "gpu-x": replace(older, hardware=gpu)}, None, [LOCAL])


def test_explicit_hardware_type_and_listing(tmp_path):
    model, own = _entry(tmp_path, LOCAL, kind="mlp")
    other = replace(LOCAL, key="cpu-other")
    _, entry2 = _entry(tmp_path, other, kind="mlp")
    io = LearnerIO(model.source.input_names, False, OutputSpec("tensor", ("output_0",)))
    learner = HardwareKeyedLearner(io, {LOCAL.key: own, "cpu-other": entry2})
    path = learner.save(tmp_path / "two")
    meta = LearnerMetadata.read(path)
    assert sorted(meta.hardware_types()) == sorted([LOCAL.key, "cpu-other"])
    loaded = meta.load_model(path, hardware_key="cpu-other", trust_code=True)
    assert loaded.for_hardware("cpu-other").entry.hardware.key == "cpu-other"
    x = model.validation[0][0]
    torch.testing.assert_close(loaded(x), model.source.module(x)[0])
    with pytest.raises(ArtifactError, match="no winner for hardware type"):
        loaded.for_hardware("cpu-missing")


def test_saving_over_a_learner_is_atomic_and_keeps_other_files(tmp_path, monkeypatch):
    from speedster_dist.artifacts import _store as store_module

    model, own = _entry(tmp_path, LOCAL, kind="mlp")
    _, other = _entry(tmp_path, replace(LOCAL, key="cpu-other"), kind="mlp")
    io = LearnerIO(model.source.input_names, False, OutputSpec("tensor", ("output_0",)))
    path = HardwareKeyedLearner(io, {LOCAL.key: own}).save(tmp_path / "artifact")
    (path / "kit").mkdir()  # e.g. the rebench kit the nightly run keeps beside the winners
    (path / "kit" / "model.pt").write_bytes(b"kept")
    before = (path / "manifest.json").read_text()

    # Adding a hardware type; the save dies while writing the new winner's files.
    grown = HardwareKeyedLearner(io, {LOCAL.key: own, "cpu-other": other})
    real_write = store_module._write_files
    calls = []

    def dying_write(folder, saved):
        calls.append(folder)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(folder, saved)

    monkeypatch.setattr(store_module, "_write_files", dying_write)
    with pytest.raises(OSError, match="disk full"):
        grown.save(path)
    assert (path / "manifest.json").read_text() == before
    assert load_model(path, trust_code=True).hardware_types() == [
        LOCAL.key
    ]  # the old learner still loads

    monkeypatch.setattr(store_module, "_write_files", real_write)
    grown.save(path)
    loaded = load_model(path, hardware_key="cpu-other", trust_code=True)
    assert sorted(loaded.hardware_types()) == sorted([LOCAL.key, "cpu-other"])
    x = model.validation[0][0]
    torch.testing.assert_close(loaded(x), model.source.module(x)[0])
    folders = {raw["folder"] for raw in LearnerMetadata.read(path).manifest["entries"].values()}
    on_disk = {p.name for p in path.iterdir() if p.is_dir()}
    assert (path / "kit" / "model.pt").read_bytes() == b"kept"
    # Only the manifest's folders and the kit remain: the interrupted save removed its own.
    assert folders <= on_disk and len(on_disk - folders - {"kit"}) == 0
    assert not list(path.glob(".manifest.json.*"))
