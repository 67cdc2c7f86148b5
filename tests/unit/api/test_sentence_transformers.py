"""``optimize_model`` on a ``SentenceTransformer``: its transformer is optimized, the learner's
``encode`` returns what ``SentenceTransformer.encode`` returns (pooling and normalization after
the winner), the guard compares embeddings by cosine, and a saved learner keeps ``encode``."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from speedster_dist import load_model
from speedster_dist.artifacts import TOKENIZER_FILES, ArtifactError, LearnerIO
from speedster_dist.artifacts._encoder import pooling_modes
from speedster_dist.errors import InputError
from speedster_dist.learner import HardwareKeyedLearner
from speedster_dist.modelio import OutputSpec
from speedster_dist.testing.models import tiny_sentence_transformer

from .helpers import SLOW_BACKENDS, TEXTS, SpyExecutor, baseline, optimize

pytest.importorskip("sentence_transformers")

UNSEEN = [
    "A sentence that no sample had, longer than every one of them, to check dynamic lengths.",
    "Short.",
    "The cat sat on the mat.",
]
CLOSE: dict[str, Any] = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    return tiny_sentence_transformer(tmp_path_factory.mktemp("st") / "tiny-st")


@pytest.fixture(scope="module")
def learner(tiny_st):
    return optimize(tiny_st, TEXTS)


def test_encode_returns_what_the_sentence_transformer_returns(tiny_st, learner):
    baseline(learner, drop=None)
    winner = next(iter(learner.entries.values()))
    assert winner.precision == "fp32"
    assert learner.about["metric"] == "cosine"  # the default for embeddings
    expected = tiny_st.encode(UNSEEN)
    got = learner.encode(UNSEEN)
    assert isinstance(got, np.ndarray) and got.shape == (3, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, **CLOSE)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)  # its Normalize
    # The forms SentenceTransformer.encode returns.
    one = learner.encode(UNSEEN[0])
    assert one.shape == (32,)
    np.testing.assert_allclose(one, expected[0], **CLOSE)
    tensor = learner.encode(UNSEEN, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (3, 32)
    listed = learner.encode(UNSEEN, convert_to_numpy=False)
    assert isinstance(listed, list) and [t.shape for t in listed] == [(32,)] * 3
    assert learner.encode([]).shape == (0,)
    # The learner is also called like the transformer: token embeddings out.
    tokens = dict(tiny_st.tokenizer(UNSEEN, padding=True, return_tensors="pt"))
    with torch.no_grad():
        hidden = tiny_st[0].auto_model(**tokens).last_hidden_state
    torch.testing.assert_close(learner(**tokens), hidden, **CLOSE)


def test_batch_size_sets_the_texts_per_call_not_the_result(learner, tiny_st, monkeypatch):
    runner = learner.for_hardware()
    calls = []
    compiled = runner.compiled

    def counting(*inputs):
        calls.append(tuple(inputs[0].shape))
        return compiled(*inputs)

    monkeypatch.setattr(runner, "compiled", counting)
    texts = UNSEEN + TEXTS  # 8 texts
    by_two = learner.encode(texts, batch_size=2)
    assert [rows for rows, _ in calls] == [2, 2, 2, 2]
    calls.clear()
    whole = learner.encode(texts, batch_size=64)
    assert [rows for rows, _ in calls] == [8]
    np.testing.assert_allclose(by_two, whole, **CLOSE)
    np.testing.assert_allclose(learner.encode(texts, batch_size=3), whole, **CLOSE)
    np.testing.assert_allclose(whole, tiny_st.encode(texts), **CLOSE)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            learner.encode(texts, batch_size=bad)
    with pytest.raises(TypeError, match="item 1 is a int"):
        learner.encode(["text", 3])


def test_a_saved_and_loaded_learner_keeps_encode(learner, tiny_st, tmp_path):
    path = learner.save(tmp_path / "learner")
    manifest = json.loads((path / "manifest.json").read_text())
    encoder = manifest["encoder"]
    assert encoder["normalize"] is True
    assert pooling_modes(encoder["pooling"]) == ["mean"]
    assert set(encoder["files"]) <= TOKENIZER_FILES and "tokenizer.json" in encoder["files"]
    assert sorted(p.name for p in (path / encoder["folder"]).iterdir()) == sorted(encoder["files"])
    card = (path / "README.md").read_text()
    assert "model.encode([" in card and "pooling (`mean`) and normalization" in card
    expected = tiny_st.encode(UNSEEN)
    loaded = load_model(path, trust_code=True)  # a TorchScript winner is a program
    np.testing.assert_allclose(loaded.encode(UNSEEN, batch_size=2), expected, **CLOSE)
    assert loaded.about == learner.about
    # The portable fallback (the transformer as ONNX, for any machine) encodes the same.
    portable = load_model(path, hardware_key="portable")
    np.testing.assert_allclose(portable.encode(UNSEEN), expected, **CLOSE)
    # Saved again over itself: the new files replace the old ones, nothing is left behind.
    learner.save(path)
    encoder = json.loads((path / "manifest.json").read_text())["encoder"]
    assert [p.name for p in path.iterdir() if p.name.startswith("_encoder")] == [encoder["folder"]]
    np.testing.assert_allclose(load_model(path, trust_code=True).encode(UNSEEN), expected, **CLOSE)
    # The tokenizer's files are checked like every file, when the learner loads.
    vocab = path / encoder["folder"] / "tokenizer.json"
    vocab.write_text(vocab.read_text().replace('"[CLS]"', '"[XLS]"', 1))
    with pytest.raises(ArtifactError, match=r"tokenizer\.json does not match its checksum"):
        load_model(path, hardware_key="portable")


def test_the_metric_defaults_to_cosine_only_for_a_sentence_transformer(tiny_st):
    fast = [*SLOW_BACKENDS, "torchscript"]  # the eager baseline is enough here
    learner = optimize(tiny_st, TEXTS, metric="numeric_precision", ignore_compilers=fast)
    assert learner.about["metric"] == "numeric_precision"
    # (named after its folder; before sentence-transformers 6, after its transformer's)
    assert learner.about["model"] in ("tiny-st", "tiny-st-bert")


def test_sentence_transformers_it_cannot_encode_like_the_original_are_refused(tmp_path):
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.modules import Dense
    except ImportError:  # sentence-transformers before 6
        from sentence_transformers.models import Dense  # type: ignore[no-redef]

    base = tiny_sentence_transformer(tmp_path / "st")
    dense = SentenceTransformer(modules=[*base, Dense(32, 8)], device="cpu")
    spy = SpyExecutor()
    with pytest.raises(InputError, match=r"modules are \['Transformer', 'Pooling', 'Normalize', "):
        optimize(dense, TEXTS, executor=spy)
    base.default_prompt_name = "query"
    base.prompts = {"query": "query: "}
    with pytest.raises(InputError, match="prepends the prompt 'query'"):
        optimize(base, TEXTS, executor=spy)
    assert spy.calls == []  # refused before any trial


def test_encode_needs_a_learner_made_from_a_sentence_transformer():
    learner = HardwareKeyedLearner(LearnerIO(("x",), False, OutputSpec("tensor", ("y",))), {})
    with pytest.raises(TypeError, match="needs a learner made from a SentenceTransformer"):
        learner.encode(["text"])
