"""The model card: README.md in every saved learner, generated from its manifest, listed in it
with its checksum (a changed README is refused at load like any file), and safe to render
whatever the model's name says."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from speedster_dist import load_model
from speedster_dist.artifacts import ArtifactError, LearnerIO, Manifest, WinnerEntry
from speedster_dist.artifacts._card import code_span, render_card
from speedster_dist.backends import BuildConfig, get_backend
from speedster_dist.cache import CACHE_ENV
from speedster_dist.hardware import local_cpu
from speedster_dist.learner import HardwareKeyedLearner
from speedster_dist.modelio import OutputSpec
from speedster_dist.records import DeviceKind, Precision, SavedCandidate
from speedster_dist.runtime import save_compiled
from speedster_dist.testing.backend_contract import ContractModel, contract_model

pytest.importorskip("onnxruntime")

LOCAL = local_cpu()
HOSTILE = (
    "evil](http://attacker.example) [click me](javascript:alert(1)) ![x](http://t.example/p.png)"
    " <script>alert('x')</script> <img src=x onerror=alert(1)> http://autolink.example |cell|"
    " ``` `tick` \n# heading\r\n- item \u202e"
)
OTHER = replace(LOCAL, key="cpu-other", description=f"CPU {HOSTILE}")
SECRET = "a-shared-secret-of-32-bytes-long"
ABOUT = {"model": "org/tiny-mlp", "metric": "cosine", "metric_drop_ths": 0.05, "batch_size": 1}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def mlp() -> ContractModel:
    return contract_model("mlp")


def _saved(mlp: ContractModel, backend: str, work: Path) -> SavedCandidate:
    config = BuildConfig(Precision.FP32, DeviceKind.CPU)
    compiled = get_backend(backend).build(mlp.source, [], config, work / "build")
    (work / "out").mkdir(parents=True)
    return save_compiled(compiled, backend, DeviceKind.CPU, work / "out")


def _learner(mlp: ContractModel, tmp_path: Path, about: dict[str, Any]) -> HardwareKeyedLearner:
    """An ONNX Runtime winner here (measured 2 ms against 5 ms eager, confirmed 2.4x), a
    TorchScript winner for another hardware type, an ONNX portable fallback."""
    onnx = _saved(mlp, "onnxruntime", tmp_path / "w1")
    script = _saved(mlp, "torch", tmp_path / "w2")
    metrics = {
        "latency_p50_s": 0.002,
        "baseline_p50_s": 0.005,
        "metric_drop": 0.0012,
        "confirmed_speedup": 2.4,
        "confirmed_speedup_low": 2.1,
        "confirmed_speedup_high": 2.6,
    }
    entries = {
        LOCAL.key: WinnerEntry(
            LOCAL, "onnxruntime", "fp32", "", {"graph_fusion": True}, metrics, onnx
        ),
        OTHER.key: WinnerEntry(OTHER, "torch", "fp32", "", {}, {"latency_p50_s": 0.01}, script),
    }
    io_ = LearnerIO(mlp.source.input_names, False, OutputSpec("tensor", ("output_0",)))
    return HardwareKeyedLearner(io_, entries, portable=onnx, about=about)


def test_the_card_says_what_was_optimized_its_winners_and_how_to_load_it(mlp, tmp_path):
    path = _learner(mlp, tmp_path, ABOUT).save(tmp_path / "learner")
    card = (path / "README.md").read_text()
    assert card.startswith("# Optimized with speedster-dist: `org/tiny-mlp`\n")
    assert "metric `cosine`, accepted drop 0.05" in card
    assert "Samples per call (batch): 1" in card
    # The winner of this machine's type, with its figures (2 ms; 2.40x confirmed, 2.10-2.60).
    row = next(line for line in card.splitlines() if line.startswith(f"| `{LOCAL.key}`"))
    cells = [cell.strip() for cell in row.strip("|").split(" | ")]
    assert cells[2:] == [
        "`onnxruntime fp32`",
        "`graph_fusion=True`",
        "2 ms",
        "2.40x (2.10-2.60, confirmed)",
        "0.0012",
    ]
    assert "Machines of any other type run the portable fallback: `onnxruntime` on the CPU" in card
    # The other type's winner is TorchScript: the card says it is a program, and to load with
    # trust_code=True; the manifest is not signed, and the card says so.
    assert 'load_model("path/to/this/folder", trust_code=True)' in card
    assert "Saved as programs (TorchScript or torch.export archives): `cpu-other`" in card
    assert "`manifest.json` is not signed" in card
    assert "encode(" not in card  # not a sentence-transformer


def test_a_signed_learner_s_card_says_so_and_the_signature_covers_it(mlp, tmp_path):
    path = _learner(mlp, tmp_path, ABOUT).save(tmp_path / "learner", signing_key=SECRET)
    card = (path / "README.md").read_text()
    assert "verify_key=key" in card and "`manifest.json` is signed" in card
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["card"]["file"] == "README.md"
    assert Manifest.read(path, verify_key=SECRET).manifest["card"] == manifest["card"]
    # Re-pointing the manifest at a changed README breaks the signature.
    (path / "README.md").write_text(card.replace("2 ms", "0.1 ms"))
    from speedster_dist.artifacts._card import card_record

    manifest["card"] = card_record((path / "README.md").read_text())
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="signature"):
        load_model(path, verify_key=SECRET)


def test_a_changed_or_missing_readme_is_refused_at_load(mlp, tmp_path):
    path = _learner(mlp, tmp_path, ABOUT).save(tmp_path / "learner")
    manifest = json.loads((path / "manifest.json").read_text())
    card = path / "README.md"
    from speedster_dist.artifacts import sha256_file

    assert manifest["card"]["sha256"] == sha256_file(card)
    assert load_model(path).hardware_types() == [LOCAL.key, OTHER.key]
    original = card.read_text()
    card.write_text(original.replace("2.40x", "9.99x"))
    with pytest.raises(ArtifactError, match=r"README\.md does not match its checksum"):
        load_model(path)
    card.unlink()
    with pytest.raises(ArtifactError, match=r"README\.md is missing"):
        load_model(path)
    card.symlink_to(tmp_path / "elsewhere.md")
    with pytest.raises(ArtifactError, match="symbolic link"):
        load_model(path)


def test_a_failed_save_puts_the_previous_card_back(mlp, tmp_path):
    learner = _learner(mlp, tmp_path, ABOUT)
    path = learner.save(tmp_path / "learner")
    before = (path / "README.md").read_bytes()
    learner.about = {**ABOUT, "model": "another name"}
    with pytest.raises(ValueError):  # a key too short to sign with: after the card is written
        learner.save(path, signing_key="short")
    assert (path / "README.md").read_bytes() == before
    assert load_model(path).hardware_types() == [LOCAL.key, OTHER.key]  # still loads


def _tokens(markdown: str) -> list[Any]:
    parser = MarkdownIt("commonmark", {"html": True}).enable("table")
    flat = []
    for token in parser.parse(markdown):
        flat.append(token)
        flat.extend(token.children or [])
    return flat


def test_a_hostile_model_name_adds_no_link_image_html_or_table_cell(mlp, tmp_path):
    about = {**ABOUT, "model": HOSTILE, "metric": "<b>custom</b>"}
    path = _learner(mlp, tmp_path, about).save(tmp_path / "learner")
    card = (path / "README.md").read_text()
    tokens = _tokens(card)
    kinds = {token.type for token in tokens}
    assert not kinds & {"link_open", "image", "html_inline", "html_block"}, kinds
    assert sum(t.type == "heading_open" for t in tokens) == 5  # the card's own headings
    # Each value is one code span, shown as written (line breaks and invisible marks as
    # spaces; a pipe escaped, which a table cell reads as a pipe).
    shown = " ".join(HOSTILE.replace("\u202e", " ").split())
    spans = [t.content for t in tokens if t.type == "code_inline"]
    assert shown.replace("|", "\\|") in spans  # the model's name, in the heading and the list
    assert f"CPU {shown}" in spans  # the hardware type's description, in its table cell
    # The hostile description stays inside its cell: every row has the table's 7 cells.
    rows = [t for t in tokens if t.type == "tr_open"]
    cells = [sum(1 for _ in _cells(tokens, row)) for row in rows]
    assert cells == [7, 7, 7]
    assert "metric `<b>custom</b>`" in card


def _cells(tokens: list[Any], row: Any) -> list[Any]:
    start = tokens.index(row)
    end = next(i for i in range(start, len(tokens)) if tokens[i].type == "tr_close")
    return [t for t in tokens[start:end] if t.type in ("td_open", "th_open")]


def test_code_spans_hold_any_text():
    assert code_span("org/name") == "`org/name`"
    assert code_span("a`b") == "``a`b``"
    assert code_span("`edge``") == "``` `edge`` ```"
    assert code_span("a|b\nc") == "`a\\|b c`"
    assert code_span("") == "(none)"
    manifest = {
        "io": {"input_names": ["x"], "keyword": False},
        "entries": {},
        "about": {"model": "m"},
    }
    text = render_card(manifest, [], signed=False)
    assert "Every winner is data" in text and "trust_code" not in text.split("## How")[1][:200]
