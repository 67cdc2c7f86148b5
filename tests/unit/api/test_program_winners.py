"""A winner saved as a program (TorchScript) still loads the seed's way, without trust_code:
its hardware type's fastest data-only candidate is kept beside it and runs instead, with one
warning naming the speed trust_code=True would give (issue 20, item 7)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from speedster_dist import LearnerMetadata, load_model
from speedster_dist.backends import get_backend
from speedster_dist.errors import ArtifactError
from speedster_dist.testing.models import tiny_mlp

from .conftest import _Slowed
from .helpers import TOL, optimize


@pytest.fixture
def slowed(monkeypatch):
    """Eager 30 ms slower per call, ONNX Runtime 10 ms: TorchScript wins, ONNX Runtime is
    the fastest data-only candidate, in that order on any machine."""
    for name, seconds in (("torch", 0.03), ("onnxruntime", 0.01)):
        backend = get_backend(name)
        build = backend.build

        def slow_build(*args, _build=build, _s=seconds, **kwargs):
            return _Slowed(_build(*args, **kwargs), _s)

        monkeypatch.setattr(backend, "build", slow_build)


def _searched(ignored=("openvino", "torch_compile")):
    torch.manual_seed(0)
    model = tiny_mlp().eval()
    data = [((torch.randn(1, 16),), 0) for _ in range(5)]
    learner = optimize(model, data, ignore_compilers=list(ignored), confirm_rounds=0)
    return model, data, learner


def _trust_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if "trust_code" in str(w.message)]


def test_a_program_winner_loads_its_data_only_candidate_without_trust_code(slowed, tmp_path):
    model, data, learner = _searched()
    (key,) = learner.hardware_types()
    assert learner.entries[key].backend == "torchscript"
    assert learner.data_only[key].backend == "onnxruntime"
    assert "loads by default: load_model(path) runs onnxruntime fp32 (p50 " in learner.summary
    assert "its fastest data-only candidate; the winner, torchscript fp32" in learner.summary
    learner.save(tmp_path / "learner")
    manifest = json.loads((tmp_path / "learner" / "manifest.json").read_text())
    assert manifest["data_only"][key]["backend"] == "onnxruntime"
    card = (tmp_path / "learner" / "README.md").read_text()
    assert "run their fastest data-only candidate instead" in card
    assert f"`{key}`: `onnxruntime` `fp32`" in card

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = LearnerMetadata.read(tmp_path / "learner").load_model(tmp_path / "learner")
        x = data[0][0][0]
        out = loaded(x)
        loaded(x)  # called again: no second warning
    (message,) = _trust_warnings(caught)
    assert f"the winner for {key}, torchscript fp32 (p50 " in message
    assert "is saved as a program, which loads only with trust_code=True; running its " in message
    assert "fastest data-only candidate, onnxruntime fp32 (p50 " in message
    assert "load_model(path, trust_code=True) would run the winner, " in message
    assert "x faster" in message
    assert loaded.for_hardware().entry.backend == "onnxruntime"
    with torch.inference_mode():
        torch.testing.assert_close(out, model(x), **TOL)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trusted = load_model(tmp_path / "learner", trust_code=True)
        torch.testing.assert_close(trusted(x), out, **TOL)
    assert _trust_warnings(caught) == []
    assert trusted.for_hardware().entry.backend == "torchscript"

    # Asked for by key, that type's data-only candidate stands in too (one warning).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        by_key = load_model(tmp_path / "learner", hardware_key=key)
        by_key(x)
    assert by_key.for_hardware(key).entry.backend == "onnxruntime"
    assert len(_trust_warnings(caught)) == 1

    # Re-saved (the nightly's way), the stand-in is kept; describe() lists it.
    trusted.save(tmp_path / "again")
    again = LearnerMetadata.read(tmp_path / "again")
    assert again.data_only()[key].backend == "onnxruntime"
    rows = {row["hardware_type"]: row for row in again.describe()}
    assert rows[f"{key} (data-only)"]["backend"] == "onnxruntime"


def test_without_a_data_only_candidate_the_portable_fallback_stands_in(slowed, tmp_path):
    _, data, learner = _searched(ignored=("openvino", "torch_compile", "onnxruntime"))
    (key,) = learner.hardware_types()
    assert learner.entries[key].backend == "torchscript" and learner.data_only == {}
    assert learner.portable is not None and learner.portable.backend == "onnxruntime"
    assert "loads by default: load_model(path) runs the portable fallback" in learner.summary
    learner.save(tmp_path / "learner")
    assert "data_only" not in json.loads((tmp_path / "learner" / "manifest.json").read_text())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model(tmp_path / "learner")
        loaded(data[0][0][0])
    (message,) = _trust_warnings(caught)
    assert "running the portable fallback (the original model, not optimized) instead" in message


def _manifest_with(tmp_path, change) -> None:
    path = tmp_path / "learner" / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_a_data_only_entry_must_be_data_and_stand_in_for_a_winner(slowed, tmp_path):
    _, _, learner = _searched()
    (key,) = learner.hardware_types()
    learner.save(tmp_path / "learner")
    original = (tmp_path / "learner" / "manifest.json").read_text()

    def as_program(manifest):
        manifest["data_only"][key]["backend"] = "torchscript"

    _manifest_with(tmp_path, as_program)
    with pytest.raises(ArtifactError, match="'torchscript' saves programs, not data"):
        LearnerMetadata.read(tmp_path / "learner")
    (tmp_path / "learner" / "manifest.json").write_text(original)

    def orphan(manifest):
        manifest["data_only"]["cpu-other"] = manifest["data_only"].pop(key)

    _manifest_with(tmp_path, orphan)
    with pytest.raises(ArtifactError, match="stands in for no winner"):
        LearnerMetadata.read(tmp_path / "learner")
