"""The command line without Ray: arguments, files, errors and exit codes."""

import json

import numpy as np
import pytest
import torch

from speedster_dist.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from speedster_dist.cli._common import CliError
from speedster_dist.cli._kit import read_kit, write_kit
from speedster_dist.cli._loading import detect_inputs, detect_model, load_inputs, load_model
from speedster_dist.cli._rebench import exit_code
from speedster_dist.cli._sweep import load_plan
from speedster_dist.testing import models


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert") / "tiny-bert"
    models.tiny_bert().save_pretrained(folder)
    models.minilm_tokenizer().save_pretrained(folder)
    return folder


def test_help_and_usage_errors_have_their_exit_codes(capsys):
    assert main(["--help"]) == EXIT_OK
    assert "optimize" in capsys.readouterr().out
    assert main([]) == EXIT_USAGE
    assert main(["optimize"]) == EXIT_USAGE  # MODEL and --inputs are required
    assert main(["frobnicate"]) == EXIT_USAGE


def test_a_missing_model_fails_before_any_cluster_is_touched(tmp_path, capsys):
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray of another test is connected in this process")
    texts = tmp_path / "t.json"
    texts.write_text('["a"]')
    code = main(["optimize", str(tmp_path / "nope"), "--inputs", str(texts)])
    assert code == EXIT_USAGE
    assert "does not exist" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_report_errors(tmp_path, capsys):
    assert (
        main(["report", "--history", str(tmp_path / "none"), "--out", str(tmp_path / "r.html")])
        == EXIT_USAGE
    )
    (tmp_path / "empty").mkdir()
    assert (
        main(["report", "--history", str(tmp_path / "empty"), "--out", str(tmp_path / "r.html")])
        == EXIT_FAILED
    )
    assert "holds no trial" in capsys.readouterr().err


def test_rebench_needs_learners(tmp_path, capsys):
    assert main(["rebench", str(tmp_path / "none"), "--history", str(tmp_path / "h")]) == EXIT_USAGE
    assert (
        main(["rebench", str(tmp_path), "--history", str(tmp_path / "h"), "--threshold", "0"])
        == EXIT_USAGE
    )


def test_exit_code_of_a_night():
    assert exit_code(regressions=0, errors=0) == 0
    assert exit_code(regressions=0, errors=2) == 1
    assert exit_code(regressions=1, errors=2) == 3


def test_models_are_recognised_by_their_form(bert_dir, tmp_path):
    assert detect_model(bert_dir).kind == "hf"
    for name, kind in (("m.onnx", "onnx"), ("m.pt", "torchscript"), ("m.pt2", "torch_export")):
        (tmp_path / name).write_bytes(b"x")
        assert detect_model(tmp_path / name).kind == kind
    (tmp_path / "m.bin").write_bytes(b"x")
    with pytest.raises(CliError, match="cannot tell"):
        detect_model(tmp_path / "m.bin")
    with pytest.raises(CliError, match=r"without config\.json"):
        detect_model(tmp_path)
    with pytest.raises(CliError, match="Auto class"):
        detect_model(bert_dir, "BertModel")


def test_torchscript_models_load_and_survive_pickling(tmp_path):
    import pickle

    mlp = models.tiny_mlp()
    torch.jit.save(torch.jit.trace(mlp, (torch.randn(1, 16),)), str(tmp_path / "m.pt"))
    loaded = load_model(detect_model(tmp_path / "m.pt"))
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
        texts, tokenizer, args = load_inputs(source)
        assert texts == ["one", "two"] and source.tokenizer == bert_dir
        assert args == {"padding": "max_length", "truncation": True, "max_length": 12}
        assert tokenizer("one")["input_ids"][0] == 101  # [CLS]
    (tmp_path / "bad.json").write_text('[{"txt": 1}]')
    with pytest.raises(CliError, match="item 0 is not a text"):
        load_inputs(detect_inputs(tmp_path / "bad.json", model))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(CliError, match="need a tokenizer"):
        detect_inputs(tmp_path / "a.json", detect_model(onnx))


def test_npz_arrays_become_batches_by_name_or_position(tmp_path, bert_dir):
    model = detect_model(bert_dir)
    ids = np.arange(12).reshape(6, 2)
    np.savez(tmp_path / "named.npz", input_ids=ids, attention_mask=np.ones((6, 2), "i8"))
    samples, tokenizer, _ = load_inputs(detect_inputs(tmp_path / "named.npz", model, batch_size=2))
    assert tokenizer is None and len(samples) == 3
    assert samples[1]["input_ids"].tolist() == [[4, 5], [6, 7]]
    np.savez(tmp_path / "positional.npz", ids, labels=np.array([0, 1, 0, 1, 1, 0]))
    samples, _, _ = load_inputs(detect_inputs(tmp_path / "positional.npz", model))
    assert len(samples) == 6 and samples[2][1].tolist() == [0]
    assert samples[2][0][0].tolist() == [[4, 5]]
    np.savez(tmp_path / "ragged.npz", a=np.ones((3, 2)), b=np.ones((4, 2)))
    with pytest.raises(CliError, match="same number of rows"):
        load_inputs(detect_inputs(tmp_path / "ragged.npz", model))


def test_the_kit_round_trips_and_refuses_tampering(bert_dir, tmp_path):
    (bert_dir.parent / "texts.jsonl").write_text('"hello"\n')
    (bert_dir / "pytorch_model.bin").write_bytes(b"a pickle that must not be copied")
    model = detect_model(bert_dir)
    inputs = detect_inputs(bert_dir.parent / "texts.jsonl", model, max_length=8)
    root = write_kit(tmp_path / "learner", "tiny", model, inputs, {"metric_drop_ths": 0.05})
    assert not (root / "model" / "pytorch_model.bin").exists()
    kit = read_kit(tmp_path / "learner")
    assert kit.model_name == "tiny" and kit.model.kind == "hf"
    assert kit.inputs.tokenizer == kit.model.path and kit.inputs.max_length == 8
    assert kit.options == {"metric_drop_ths": 0.05}
    texts, _, _ = load_inputs(kit.inputs)
    assert texts == ["hello"]
    assert load_model(kit.model).config.hidden_size == 32
    (root / "inputs.jsonl").write_text('"changed"\n')
    with pytest.raises(CliError, match="does not match its checksum"):
        read_kit(tmp_path / "learner")
    with pytest.raises(CliError, match="no rebench kit"):
        read_kit(tmp_path)


def test_sweep_plans_expand_jobs_by_settings(tmp_path):
    (tmp_path / "sweep.yaml").write_text(
        """
out: out
history: h
concurrency: 2
defaults: {metric_drop_ths: 0.05, ignore_compilers: [tensorrt]}
jobs:
  - name: bert
    model: models/bert
    inputs: data/t.jsonl
    settings: [{name: exact, metric_drop_ths: 0}, {name: fast, optimization_time: 60}]
  - model: models/resnet.onnx
    inputs: data/x.npz
    batch_size: 4
"""
    )
    plan = load_plan(tmp_path / "sweep.yaml")
    assert [j.name for j in plan.jobs] == ["bert-exact", "bert-fast", "resnet"]
    exact, fast, resnet = plan.jobs
    assert exact.metric_drop_ths == 0.0 and fast.metric_drop_ths == 0.05
    assert fast.optimization_time == 60 and fast.ignore_compilers == ("tensorrt",)
    assert (
        exact.model == tmp_path / "models" / "bert" and exact.out == tmp_path / "out" / "bert-exact"
    )
    assert resnet.batch_size == 4 and plan.history == tmp_path / "h" and plan.concurrency == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jobs: []", "no job"),
        ("jobz: []", "unknown keys"),
        ("[1, 2]", "must hold a mapping"),
        ("jobs: [{model: m}]", "needs at least 'model' and 'inputs'"),
        ("jobs: [{model: m, inputs: i, trheshold: 1}]", "unknown settings"),
        ("jobs: [{model: m, inputs: i, batch_size: many}]", "batch_size='many' is invalid"),
        ("jobs: [{model: m, inputs: i}, {model: m, inputs: j}]", "must be unique"),
        ("concurrency: 0\njobs: [{model: m, inputs: i}]", "concurrency must be"),
        ("jobs: [{name: 'a b', model: m, inputs: i}]", "letters, digits"),
        ("jobs: [{model: m, inputs: i", "not valid YAML"),
    ],
)
def test_sweep_files_are_validated(tmp_path, text, message):
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(CliError, match=message):
        load_plan(tmp_path / "s.yaml")
