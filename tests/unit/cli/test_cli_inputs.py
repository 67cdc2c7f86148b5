"""Inputs that cannot be garbage, names users chose, and options only where they act."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from speedster_dist.cli import EXIT_OK, EXIT_USAGE, _optimize, _sweep, main
from speedster_dist.testing import models

DOC = Path(__file__).resolve().parents[3] / "docs" / "bad-inputs.md"
_CLI_ROW = re.compile(r"^\| ([a-z][^|`]+?) \| (\d) \| `(.+)` \|$")
TEXTS = ["one text", "two texts", "three", "four", "five", "six"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``tiny/model``: a Hugging Face folder with its tokenizer; ``bare/model``: without."""
    root = tmp_path_factory.mktemp("models")
    model: Any = models.tiny_bert()
    for name in ("tiny", "bare"):
        model.save_pretrained(root / name / "model")
    models.minilm_tokenizer().save_pretrained(root / "tiny" / "model")
    return root


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    def fail(*args, **kwargs):
        pytest.fail("the command went on to Ray with inputs it must refuse")

    monkeypatch.setattr(_optimize, "connect_cluster", fail)
    monkeypatch.setattr(_sweep, "connect_cluster", fail)


def _texts(tmp_path: Path, count: int) -> Path:
    path = tmp_path / f"texts{count}.json"
    path.write_text(json.dumps(TEXTS[:count]))
    return path


def _scenario(situation: str, folders: Path, tmp_path: Path) -> list[str]:
    """The command line of each situation of the doc's table."""
    good, bare = folders / "tiny" / "model", folders / "bare" / "model"
    if situation == "texts, model folder without tokenizer files":
        return ["optimize", str(bare), "--inputs", str(_texts(tmp_path, 6))]
    if situation == "texts, --tokenizer folder without tokenizer files":
        return [
            "optimize",
            str(good),
            "--inputs",
            str(_texts(tmp_path, 6)),
            "--tokenizer",
            str(bare),
        ]
    if situation == "2 texts":
        return ["optimize", str(good), "--inputs", str(_texts(tmp_path, 2))]
    if situation == "6 texts in batches of 2":
        argv = ["optimize", str(good), "--inputs", str(_texts(tmp_path, 6))]
        return [*argv, "--batch-size", "2"]
    if situation == "an .npz of 3 rows":
        import numpy as np

        ids = np.arange(3 * 8).reshape(3, 8)
        np.savez(tmp_path / "ids.npz", input_ids=ids, attention_mask=np.ones_like(ids))
        return ["optimize", str(good), "--inputs", str(tmp_path / "ids.npz")]
    if situation == "a sweep job with 1 text":
        sweep = tmp_path / "sweep.yaml"
        sweep.write_text(
            f"history: {tmp_path / 'h'}\njobs:\n"
            f"  - {{name: tiny, model: {good}, inputs: {_texts(tmp_path, 1)}}}\n"
        )
        return ["sweep", str(sweep)]
    return _output_scenario(situation, good, tmp_path)


def _output_scenario(situation: str, good: Path, tmp_path: Path) -> list[str]:
    """Settings and paths refused before the model loads (issue 20, item 6)."""
    argv = ["optimize", str(good), "--inputs", str(_texts(tmp_path, 6))]
    taken = tmp_path / "taken"
    taken.write_text("a file where a folder is expected")
    if situation == "--out names an existing file":
        return [*argv, "--out", str(taken)]
    if situation == "--out inside a file":
        return [*argv, "--out", str(taken / "learner")]
    if situation == "--history names an existing file":
        return [*argv, "--history", str(taken)]
    if situation == "a sweep whose out is a file":
        sweep = tmp_path / "sweep.yaml"
        job = f"{{name: tiny, model: {good}, inputs: {_texts(tmp_path, 6)}}}"
        sweep.write_text(f"history: {tmp_path / 'h'}\nout: {taken}\njobs:\n  - {job}\n")
        return ["sweep", str(sweep)]
    if situation == "--metric-drop-ths 1e308":
        return [*argv, "--metric-drop-ths", "1e308"]
    if situation == "texts, one of them only spaces":
        spaced = tmp_path / "spaced.json"
        spaced.write_text(json.dumps([*TEXTS[:3], "  ", *TEXTS[3:]]))
        return ["optimize", str(good), "--inputs", str(spaced)]
    raise AssertionError(f"no scenario for the documented situation {situation!r}")


def _rows() -> list[tuple[str, int, str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        match = _CLI_ROW.match(line)
        if match:
            rows.append((match.group(1), int(match.group(2)), match.group(3)))
    return rows


def test_the_command_line_table_has_its_rows():
    assert len(_rows()) >= 5


@pytest.mark.parametrize(("situation", "code", "message"), _rows())
def test_each_documented_bad_command_line_exits_with_its_message(
    situation, code, message, folders, tmp_path, capsys
):
    assert main(_scenario(situation, folders, tmp_path)) == code
    assert message in capsys.readouterr().err


def test_the_refusals_say_how_to_fix_it(folders, tmp_path, capsys):
    bare = folders / "bare" / "model"
    assert main(["optimize", str(bare), "--inputs", str(_texts(tmp_path, 6))]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--tokenizer FOLDER" in err and "tokenizer.save_pretrained" in err and ".npz" in err
    good = folders / "tiny" / "model"
    assert main(["optimize", str(good), "--inputs", str(_texts(tmp_path, 2))]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "gives 2 sample(s), fewer than 5" in err
    assert "1 calibrate(s) and 1 is held out" in err and "at least 5 samples" in err


def _optimized_spec(monkeypatch, argv: list[str]):
    seen = []
    monkeypatch.setattr(_optimize, "connect_cluster", lambda address: address)

    def run_job(spec, *args, **kwargs):
        seen.append(spec)
        return SimpleNamespace(entries={}, results=[])  # a learner with nothing in it

    monkeypatch.setattr(_optimize, "run_job", run_job)
    assert main(argv) == EXIT_OK
    return seen[0]


def test_a_model_folder_is_named_by_its_config_or_its_parent_never_model(
    folders, tmp_path, monkeypatch
):
    good = folders / "tiny" / "model"
    inputs = str(_texts(tmp_path, 6))
    assert _optimized_spec(monkeypatch, ["optimize", str(good), "--inputs", inputs]).name == "tiny"
    named = ["optimize", str(good), "--inputs", inputs, "--name", "mine"]
    assert _optimized_spec(monkeypatch, named).name == "mine"
    config = json.loads((good / "config.json").read_text())
    hub = tmp_path / "hub" / "model"
    hub.mkdir(parents=True)
    for item in good.iterdir():
        (hub / item.name).write_bytes(item.read_bytes())
    (hub / "config.json").write_text(json.dumps({**config, "_name_or_path": "org/bert-tiny"}))
    assert _optimized_spec(monkeypatch, ["optimize", str(hub), "--inputs", inputs]).name == (
        "org/bert-tiny"
    )


def test_subcommands_list_only_the_options_they_use(capsys):
    helps = {}
    for command in ("optimize", "sweep", "rebench", "report", "cluster"):
        assert main([command, "--help"]) == EXIT_OK
        helps[command] = capsys.readouterr().out
    for command in ("optimize", "sweep", "rebench"):
        assert "--cluster" in helps[command] and "--quick-measure" in helps[command]
    assert "--cluster" not in helps["report"] and "--quick-measure" not in helps["report"]
    assert "--cluster" in helps["cluster"] and "--quick-measure" not in helps["cluster"]
    assert all("--debug" in text for text in helps.values())


def test_a_sweep_names_models_after_models_and_learners_after_settings(tmp_path):
    (tmp_path / "sweep.yaml").write_text(
        """
history: h
jobs:
  - name: bert
    model: models/bert
    inputs: t.jsonl
    settings: [{name: exact, metric_drop_ths: 0}, {name: fast, optimization_time: 60}]
  - model: models/minilm/model
    inputs: t.jsonl
"""
    )
    plan = _sweep.load_plan(tmp_path / "sweep.yaml")
    assert [(j.name, j.model_name) for j in plan.jobs] == [
        ("bert-exact", "bert"),
        ("bert-fast", "bert"),
        ("minilm", "minilm"),
    ]
