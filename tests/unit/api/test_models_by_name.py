"""Models by name: ``optimize_model("org/name")`` and ``speedster-dist optimize org/name``
resolve a Hugging Face model id from the local Hugging Face cache (a cache this test builds,
laid out as the Hub's: ``models--org--name/{blobs,refs/main,snapshots/<rev>}``), offline
unless downloading is allowed, safetensors weights only, no code of the model's own unless
``trust_remote_code``."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import huggingface_hub
import numpy as np
import pytest
import torch
import transformers

from speedster_dist import hub
from speedster_dist.cli import EXIT_USAGE, _optimize, main
from speedster_dist.errors import InputError
from speedster_dist.fleet import detect_model
from speedster_dist.testing.models import (
    minilm_tokenizer,
    tiny_bert,
    tiny_sentence_transformer,
    token_batch,
)

from .helpers import TEXTS, TOL, optimize

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _cache(hub_dir: Path, repo: str, save: Callable[[Path], Any]) -> Path:
    """``repo`` in the Hub's cache layout: files in ``blobs/`` by hash, the snapshot of
    ``REVISION`` made of links to them, ``refs/main`` naming it. Returns the snapshot."""
    org, name = repo.split("/")
    root = hub_dir / f"models--{org}--{name}"
    staged = root / "staged"
    save(staged)
    snapshot = root / "snapshots" / REVISION
    for path in sorted(p for p in staged.rglob("*") if p.is_file()):
        blob = root / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        path.replace(blob)
        link = snapshot / path.relative_to(staged)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    shutil.rmtree(staged)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(REVISION)
    return snapshot


def _bert(folder: Path) -> None:
    model: Any = tiny_bert()
    model.save_pretrained(folder)
    minilm_tokenizer().save_pretrained(folder)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty Hugging Face cache of this test's own (HF_HOME and HF_HUB_CACHE point into
    tmp_path); downloading is not forbidden by the environment: only the code keeps it off."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return tmp_path / "hf" / "hub"


@pytest.fixture
def downloads(monkeypatch):
    """Every snapshot_download call (the real one runs: with local_files_only it never
    touches the network; a call that would go online fails the test instead)."""
    calls: list[dict[str, Any]] = []
    real = huggingface_hub.snapshot_download

    def recorded(repo_id, **kwargs):
        calls.append({"repo_id": repo_id, **kwargs})
        if not kwargs.get("local_files_only"):
            pytest.fail(f"snapshot_download went online for {repo_id}")
        return real(repo_id, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", recorded)
    return calls


@pytest.mark.slow  # a search and a save/load round trip: 10-20 s on 2 cores
def test_a_model_id_is_resolved_from_the_local_cache_offline(hub_dir, downloads, tmp_path):
    snapshot = _cache(hub_dir, "org/tiny-bert", _bert)
    data = [dict(token_batch(seq_len=n, seed=n)) for n in (6, 9, 12, 7, 10)]
    learner = optimize("org/tiny-bert", data)
    assert [(c["repo_id"], c["local_files_only"], Path(c["cache_dir"])) for c in downloads] == [
        ("org/tiny-bert", True, hub_dir)
    ]
    assert learner.about["model"] == "org/tiny-bert"  # named by its id, not its snapshot
    original = transformers.AutoModel.from_pretrained(snapshot).eval()
    sample = dict(token_batch(seq_len=11, seed=3))
    with torch.no_grad():
        expected = original(**sample)
    out = learner(**sample)
    for key in ("last_hidden_state", "pooler_output"):
        torch.testing.assert_close(out[key], expected[key], **TOL)
    card = (learner.save(tmp_path / "learner") / "README.md").read_text()
    assert card.startswith("# Optimized with speedster-dist: `org/tiny-bert`")
    # HF_HOME alone says where the cache is, as for huggingface_hub.
    assert hub.hub_cache() == hub_dir
    with pytest.MonkeyPatch.context() as env:
        env.delenv("HF_HUB_CACHE")
        assert hub.resolve("org/tiny-bert") == snapshot


def test_an_id_missing_from_the_cache_says_how_to_get_it(hub_dir, downloads):
    with pytest.raises(InputError) as caught:
        optimize("org/missing", TEXTS)
    message = str(caught.value)
    assert "no model org/missing is in the local Hugging Face cache" in message
    assert str(hub_dir) in message and "hf download org/missing" in message
    assert "allow_download=True (CLI: --allow-download)" in message
    assert [c["local_files_only"] for c in downloads] == [True]
    with pytest.raises(InputError, match="neither a local folder nor a Hugging Face model id"):
        optimize("not a model: what is this?", TEXTS)


def test_downloading_takes_an_explicit_flag_and_fetches_no_pickle_and_no_code(hub_dir, monkeypatch):
    snapshot = _cache(hub_dir, "org/tiny-bert", _bert)
    calls: list[dict[str, Any]] = []

    def fake(repo_id, **kwargs):  # the Hub, as far as this test goes
        calls.append(kwargs)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    assert hub.resolve("org/other", allow_download=True) == snapshot
    assert hub.resolve("org/other", allow_download=True, trust_remote_code=True) == snapshot
    assert [c["local_files_only"] for c in calls] == [False, False]
    plain, with_code = (c["allow_patterns"] for c in calls)
    assert "*.safetensors" in plain and not any("bin" in p or "py" in p for p in plain)
    assert with_code == [*plain, "*.py"]
    # HF_HUB_OFFLINE wins over the flag: nothing goes online, and the error says why.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _missing)
    with pytest.raises(InputError, match=r"HF_HUB_OFFLINE .* forbids downloading"):
        hub.resolve("org/other", allow_download=True)


def _missing(repo_id, **kwargs):
    assert kwargs["local_files_only"] is True
    from huggingface_hub.utils import LocalEntryNotFoundError

    raise LocalEntryNotFoundError("not cached")


def test_pickled_weights_are_refused_without_being_read(hub_dir, downloads, monkeypatch):
    def pickled(folder: Path) -> None:
        _bert(folder)
        from safetensors.torch import load_file

        state = load_file(folder / "model.safetensors")
        torch.save(state, folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()

    _cache(hub_dir, "org/pickled", pickled)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a pickle was loaded"))
    with pytest.raises(InputError, match=r"only pickled weights \(pytorch_model\.bin\)") as caught:
        optimize("org/pickled", TEXTS)
    assert "use_safetensors=True" in str(caught.value)


def test_a_model_s_own_code_runs_only_with_trust_remote_code(hub_dir, downloads, monkeypatch):
    def custom(folder: Path) -> None:
        _bert(folder)
        config = json.loads((folder / "config.json").read_text())
        config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "modeling_evil.py").write_text("raise SystemExit('ran the code')\n")

    snapshot = _cache(hub_dir, "org/custom", custom)
    with pytest.raises(InputError, match=r"ships its own code \(auto_map in config\.json"):
        optimize("org/custom", TEXTS)
    with pytest.raises(InputError, match="trust_remote_code must be True or False"):
        optimize("org/custom", TEXTS, trust_remote_code="false")  # never taken as true
    # With trust_remote_code=True, transformers is asked to run it (recorded, not run here).
    asked: list[dict[str, Any]] = []

    def from_pretrained(folder, **kwargs):
        asked.append({"folder": Path(folder), **kwargs})
        return tiny_bert()

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", from_pretrained)
    model = hub.open_model("org/custom", trust_remote_code=True)
    assert asked == [
        {
            "folder": snapshot,
            "local_files_only": True,
            "use_safetensors": True,
            "trust_remote_code": True,
        }
    ]
    assert model.name_or_path == "org/custom"


@pytest.mark.slow  # a search of a sentence-transformer: 10-20 s on 2 cores
def test_a_sentence_transformer_by_name_gets_encode(hub_dir, downloads):
    pytest.importorskip("sentence_transformers")
    snapshot = _cache(hub_dir, "org/tiny-st", lambda f: tiny_sentence_transformer(f))
    learner = optimize("org/tiny-st", TEXTS)
    assert learner.about == {
        "model": "org/tiny-st",
        "metric": "cosine",
        "metric_drop_ths": None,
        "batch_size": 1,
    }
    from sentence_transformers import SentenceTransformer

    original = SentenceTransformer(str(snapshot), device="cpu", local_files_only=True)
    np.testing.assert_allclose(
        learner.encode(["An unseen text."]), original.encode(["An unseen text."]), atol=1e-5
    )
    modules = json.loads((snapshot / "modules.json").read_text())
    modules[1]["type"] = "evil_package.Pooling"
    (snapshot / "modules.json").unlink()  # a link into the blobs: replaced, not written through
    (snapshot / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(InputError, match="modules outside sentence-transformers"):
        optimize("org/tiny-st", TEXTS)


def test_the_cli_takes_a_model_id(hub_dir, downloads, tmp_path, monkeypatch, capsys):
    snapshot = _cache(hub_dir, "org/tiny-bert", _bert)
    assert detect_model("org/tiny-bert").path == snapshot
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(TEXTS))
    jobs: list[Any] = []
    monkeypatch.setattr(_optimize, "connect_cluster", lambda address: None)
    searched = SimpleNamespace(entries={}, results=[])  # what the CLI reports of a search

    def run_job(spec: Any, *args: Any, **kwargs: Any) -> SimpleNamespace:
        jobs.append(spec)
        return searched

    monkeypatch.setattr(_optimize, "run_job", run_job)
    assert main(["optimize", "org/tiny-bert", "--inputs", str(texts)]) == 0
    assert [(spec.name, spec.model) for spec in jobs] == [("org/tiny-bert", snapshot)]
    assert main(["optimize", "org/missing", "--inputs", str(texts)]) == EXIT_USAGE
    assert "--allow-download" in capsys.readouterr().err
