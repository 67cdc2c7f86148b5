"""Models and inputs described by files: recognised by their form, read without pickles."""

import json

import numpy as np
import pytest
import torch

from speedster_dist.errors import InputError
from speedster_dist.fleet import detect_inputs, detect_model, read_inputs, read_model
from speedster_dist.testing import models


def test_models_are_recognised_by_their_form(bert_dir, tmp_path):
    assert detect_model(bert_dir).kind == "hf"
    for name, kind in (("m.onnx", "onnx"), ("m.pt", "torchscript"), ("m.pt2", "torch_export")):
        (tmp_path / name).write_bytes(b"x")
        assert detect_model(tmp_path / name).kind == kind
    (tmp_path / "m.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="cannot tell"):
        detect_model(tmp_path / "m.bin")
    with pytest.raises(InputError, match=r"without config\.json"):
        detect_model(tmp_path)
    with pytest.raises(InputError, match="Auto class"):
        detect_model(bert_dir, "BertModel")


def test_torchscript_models_load_and_survive_pickling(tmp_path):
    import pickle

    mlp = models.tiny_mlp()
    torch.jit.save(torch.jit.trace(mlp, (torch.randn(1, 16),)), str(tmp_path / "m.pt"))
    loaded = read_model(detect_model(tmp_path / "m.pt"))
    x = torch.randn(2, 16)
    again = pickle.loads(pickle.dumps(loaded))  # how the payload reaches Ray workers
    assert torch.allclose(again(x), mlp(x), atol=1e-6)


def test_texts_in_every_form(bert_dir, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(["one", {"text": "two"}]))
    (tmp_path / "b.jsonl").write_text('"one"\n\n{"text": "two", "label": 1}\n')
    (tmp_path / "c.txt").write_text("one\n\ntwo\n")
    model = detect_model(bert_dir)
    for name in ("a.json", "b.jsonl", "c.txt"):
        source = detect_inputs(tmp_path / name, model, max_length=12)
        texts, tokenizer, args = read_inputs(source)
        assert texts == ["one", "two"] and source.tokenizer == bert_dir
        assert args == {"padding": "max_length", "truncation": True, "max_length": 12}
        assert tokenizer("one")["input_ids"][0] == 101  # [CLS]
    (tmp_path / "bad.json").write_text('[{"txt": 1}]')
    with pytest.raises(InputError, match="item 0 is not a text"):
        read_inputs(detect_inputs(tmp_path / "bad.json", model))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(InputError, match="need a tokenizer"):
        detect_inputs(tmp_path / "a.json", detect_model(onnx))


def test_npz_arrays_become_batches_by_name_or_position(tmp_path, bert_dir):
    model = detect_model(bert_dir)
    ids = np.arange(12).reshape(6, 2)
    np.savez(tmp_path / "named.npz", input_ids=ids, attention_mask=np.ones((6, 2), "i8"))
    samples, tokenizer, _ = read_inputs(detect_inputs(tmp_path / "named.npz", model, batch_size=2))
    assert tokenizer is None and len(samples) == 3
    assert samples[1]["input_ids"].tolist() == [[4, 5], [6, 7]]
    np.savez(tmp_path / "positional.npz", ids, labels=np.array([0, 1, 0, 1, 1, 0]))
    samples, _, _ = read_inputs(detect_inputs(tmp_path / "positional.npz", model))
    assert len(samples) == 6 and samples[2][1].tolist() == [0]
    assert samples[2][0][0].tolist() == [[4, 5]]
    np.savez(tmp_path / "ragged.npz", a=np.ones((3, 2)), b=np.ones((4, 2)))
    with pytest.raises(InputError, match="same number of rows"):
        read_inputs(detect_inputs(tmp_path / "ragged.npz", model))
