"""A sentence-transformer learner's ``encoder`` record (pooling and tokenizer files) is untrusted
input like the rest of the manifest: every field is checked, only tokenizer data files are
listed, each is checked against its SHA-256, and none can make the tokenizer run code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from speedster_dist import load_model
from speedster_dist.artifacts import TOKENIZER_FILES, ArtifactError, SentenceEncoding
from speedster_dist.learner import HardwareKeyedLearner
from speedster_dist.sentence import SentenceEncoder
from speedster_dist.testing.models import minilm_tokenizer

from .test_card import ABOUT, _learner, mlp  # noqa: F401


def _tokenizer_files(tmp_path: Path) -> dict[str, bytes]:
    minilm_tokenizer().save_pretrained(tmp_path / "tokenizer")
    return {
        p.name: p.read_bytes()
        for p in (tmp_path / "tokenizer").iterdir()
        if p.name in TOKENIZER_FILES
    }


@pytest.fixture
def saved(mlp, tmp_path) -> Path:  # noqa: F811
    learner: HardwareKeyedLearner = _learner(mlp, tmp_path, ABOUT)
    encoding = SentenceEncoding(
        {"embedding_dimension": 4, "pooling_mode": "mean", "include_prompt": True},
        True,
        _tokenizer_files(tmp_path),
    )
    learner.encoder = SentenceEncoder(encoding)
    return learner.save(tmp_path / "learner")


def _edit(path: Path, change: Any) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest["encoder"])
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_a_saved_encoder_loads_its_tokenizer(saved):
    learner = load_model(saved)
    assert learner.encoder is not None
    assert learner.encoder.tokenizer("a text")["input_ids"][0] == 101  # MiniLM's [CLS]
    assert learner.encoder.encoding.pooling["pooling_mode"] == "mean"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e["pooling"].update(pooling_mode="sum"), r"pooling_mode: \['sum'\]"),
        (lambda e: e["pooling"].update(embedding_dimension="4"), "embedding_dimension"),
        (lambda e: e["pooling"].update(evil=1), "unknown pooling setting 'evil'"),
        (lambda e: e.update(normalize="yes"), "normalize"),
        (lambda e: e.update(folder="../elsewhere"), "plain"),
        (lambda e: e["files"].update({"model.pkl": "0" * 64}), "not tokenizer data files"),
        (lambda e: e["files"].update({"vocab.txt": "not a digest"}), "SHA-256"),
        (lambda e: e.pop("pooling"), "'pooling' is missing"),
    ],
)
def test_a_damaged_encoder_record_is_refused(saved, change, message):
    _edit(saved, change)
    with pytest.raises(ArtifactError, match=message):
        load_model(saved)


def test_a_tokenizer_that_asks_to_run_code_is_refused(saved):
    manifest = json.loads((saved / "manifest.json").read_text())
    folder = saved / manifest["encoder"]["folder"]
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    config["tokenizer_class"] = "EvilTokenizer"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    from speedster_dist.artifacts import sha256_file

    manifest["encoder"]["files"]["tokenizer_config.json"] = sha256_file(
        folder / "tokenizer_config.json"
    )
    (saved / "manifest.json").write_text(json.dumps(manifest))  # (unsigned: checksums match)
    with pytest.raises(ArtifactError, match="tokenizer cannot be loaded"):
        load_model(saved)
