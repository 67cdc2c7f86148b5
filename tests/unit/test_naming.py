"""Default model names: what users chose or what the model says it is, never ``model``."""

from __future__ import annotations

import json

from speedster_dist.naming import model_name, name_from_path
from speedster_dist.results import describe_model


def _hf_folder(path, **config):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "bert", **config}))
    return path


def test_a_folder_is_named_by_its_config(tmp_path):
    folder = _hf_folder(tmp_path / "minilm" / "model", _name_or_path="nreimers/MiniLM-L6")
    assert model_name(folder) == "nreimers/MiniLM-L6"


def test_a_generic_folder_or_file_is_named_after_its_parent(tmp_path):
    assert model_name(_hf_folder(tmp_path / "minilm" / "model")) == "minilm"
    # A config that names a local folder (saved after loading from disk) says no more.
    local = _hf_folder(tmp_path / "bert" / "model", _name_or_path=str(tmp_path / "x" / "model"))
    assert model_name(local) == "x"
    assert name_from_path(tmp_path / "resnet" / "model.onnx") == "resnet"
    assert name_from_path(tmp_path / "resnet50.onnx") == "resnet50"
    assert name_from_path("model/model") == "model"  # nothing better to say


def test_a_model_loaded_from_a_folder_is_recorded_under_the_folder_config_name(tmp_path):
    class Config:
        _name_or_path = str(_hf_folder(tmp_path / "m" / "model", _name_or_path="org/tiny"))

    class Loaded:
        config = Config()

    assert describe_model(Loaded()) == "org/tiny"
    assert describe_model(tmp_path / "m" / "model") == "org/tiny"
    assert describe_model(tmp_path / "model.onnx") == "model.onnx"  # a file keeps its name
