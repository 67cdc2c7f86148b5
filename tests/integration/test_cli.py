"""Every ``speedster-dist`` command end to end on a tiny BERT, in this process's local Ray.

The model folder is a 2-layer BERT saved with ``save_pretrained`` plus the MiniLM tokenizer;
candidates are the eager baseline and the fake backends (known latencies), timed briefly.
"""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from speedster_dist import LearnerMetadata
from speedster_dist.cli import EXIT_OK, EXIT_REGRESSION, main
from speedster_dist.learner import load_model
from speedster_dist.results import read_history
from speedster_dist.testing import models

pytestmark = pytest.mark.integration

# Keep the eager baseline and the well-behaved and faulty fakes; skip the slow real backends.
IGNORE = "torchscript,torch_compile,onnxruntime,openvino,tensorrt,fake_deadly"
TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "speedster dist measures every candidate on every hardware type",
    "a nightly job re-measures what is deployed",
    "regressions are flagged against the trailing median",
    "history is kept in parquet files partitioned by date",
    "one more sentence to hold out for validation",
]


def write_tiny_bert(folder, texts=TEXTS):
    """A tiny BERT folder with the MiniLM tokenizer, and a JSONL file of texts next to it."""
    from transformers import PreTrainedModel

    model = models.tiny_bert()
    assert isinstance(model, PreTrainedModel)
    model.save_pretrained(folder)
    models.minilm_tokenizer().save_pretrained(folder)
    inputs = folder.parent / f"{folder.name}-texts.jsonl"
    inputs.write_text("\n".join(json.dumps({"text": t}) for t in texts))
    return folder, inputs


def cli(*args):
    return main([str(a) for a in args])


def optimize_args(model, inputs, history, out, *extra):
    return [
        "optimize",
        model,
        "--inputs",
        inputs,
        "--history",
        history,
        "--out",
        out,
        "--metric-drop-ths",
        "0.05",
        "--ignore-compilers",
        IGNORE,
        "--optimization-time",
        "120",
        "--quick-measure",
        "--quiet",
        *extra,
    ]


@pytest.fixture(scope="module")
def optimized(local_ray, tmp_path_factory):
    """One `optimize` run: its learner folder and history (copied by tests that change them)."""
    root = tmp_path_factory.mktemp("cli")
    model, inputs = write_tiny_bert(root / "tiny-bert")
    history, out = root / "history", root / "learners" / "tiny"
    assert cli(*optimize_args(model, inputs, history, out)) == EXIT_OK
    return {"root": root, "model": model, "inputs": inputs, "history": history, "out": out}


def test_optimize_saves_a_learner_its_kit_and_every_trial(optimized):
    out, history = optimized["out"], optimized["history"]
    learner = load_model(out, trust_code=True)  # its winner may be a TorchScript program
    batch = models.minilm_tokenizer()(TEXTS[0], return_tensors="pt")
    with torch.inference_mode():
        reference = models.tiny_bert()(**batch).last_hidden_state
    assert torch.allclose(learner(**batch).last_hidden_state, reference, atol=1e-4)
    kit = json.loads((out / "rebench" / "kit.json").read_text())
    assert kit["model"]["kind"] == "hf" and kit["options"]["metric_drop_ths"] == 0.05
    assert "model/model.safetensors" in kit["files"] and "inputs.jsonl" in kit["files"]

    rows = read_history(history).to_pylist()
    statuses = {r["status"] for r in rows}
    assert {"complete", "failed", "rejected"} <= statuses  # fake_faulty raise / garbage
    assert len({r["run_id"] for r in rows}) == 1
    assert {r["model_name"] for r in rows} == {"tiny-bert"}
    assert {r["learner"] for r in rows} == {"tiny"}
    assert {r["hardware_type"] for r in rows} == set(learner.hardware_types())
    # the baseline's trial (and its re-timing by the confirmation, role "confirmed")
    baseline = [r for r in rows if r["is_baseline"] and r["role"] != "confirmed"]
    assert len(baseline) == 1 and baseline[0]["role"] == "baseline"
    assert baseline[0]["latency_count"] >= 10 and baseline[0]["latency_p50_s"] > 0
    assert baseline[0]["throughput"] == pytest.approx(1 / baseline[0]["latency_p50_s"])
    assert json.loads(baseline[0]["versions"])["torch"] == torch.__version__
    assert json.loads(baseline[0]["settings"])["metric_drop_ths"] == 0.05
    garbage = next(r for r in rows if r["technique"] == "garbage")
    assert garbage["status"] == "rejected" and garbage["metric_drop"] > 0.05
    assert json.loads(garbage["knobs"]) == {"slowdown": 1}
    # Plain pyarrow reads the same dataset (Hive partitions: date, hardware_type).
    plain = pq.read_table(history)
    assert plain.num_rows == len(rows)
    assert set(plain.column("hardware_type").to_pylist()) == set(learner.hardware_types())


def test_optimize_json_on_ray_is_all_of_stdout(local_ray, tmp_path, capsys):
    """Ray's workers print too (their output reaches this process): with --json, stdout is
    the document and nothing else, the summary and the progress are on stderr."""
    model, inputs = write_tiny_bert(tmp_path / "tiny-bert")
    args = optimize_args(model, inputs, tmp_path / "history", tmp_path / "out", "--json")
    assert cli(*[a for a in args if a != "--quiet"]) == EXIT_OK
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["format"] == "speedster-dist.optimize" and doc["error"] is None
    learner = load_model(tmp_path / "out", trust_code=True)
    assert {w["hardware_type"] for w in doc["winners"]} == set(learner.hardware_types())
    statuses = {t["status"] for t in doc["trials"]}
    assert {"complete", "failed", "rejected"} <= statuses  # fake_faulty: raise / garbage
    assert "[trial 1]" in err and "latency (p50 per batch)" in err


def test_optimize_takes_an_onnx_file_with_npz_inputs(local_ray, tmp_path):
    model = models.tiny_mlp()
    onnx_path = tmp_path / "mlp.onnx"
    torch.onnx.export(model, (torch.randn(1, 16),), str(onnx_path), input_names=["x"], dynamo=False)
    np.savez(tmp_path / "inputs.npz", x=np.random.default_rng(0).normal(size=(5, 16)).astype("f4"))
    history = tmp_path / "history"
    code = cli(
        "optimize",
        onnx_path,
        "--inputs",
        tmp_path / "inputs.npz",
        "--history",
        history,
        "--out",
        tmp_path / "learner",
        "--ignore-compilers",
        "openvino",
        "--quick-measure",
        "--quiet",
    )
    assert code == EXIT_OK
    rows = read_history(history).to_pylist()
    assert {r["backend"] for r in rows} == {"onnxruntime"}
    assert rows[0]["model_name"] == "mlp" and len(rows[0]["model_fingerprint"]) == 16
    learner = load_model(tmp_path / "learner", trust_code=True)
    x = torch.randn(1, 16)
    assert torch.allclose(learner(x), model(x), atol=1e-4)


@pytest.mark.slow  # three job processes
def test_sweep_runs_models_by_settings_concurrently_into_one_history(local_ray, tmp_path):
    _, inputs = write_tiny_bert(tmp_path / "bert")
    scripted = torch.jit.trace(models.tiny_mlp(), (torch.randn(1, 16),))
    torch.jit.save(scripted, str(tmp_path / "mlp.pt"))
    np.savez(tmp_path / "mlp.npz", np.random.default_rng(1).normal(size=(5, 16)).astype("f4"))
    (tmp_path / "sweep.yaml").write_text(
        f"""
out: learners
history: history
concurrency: 2
defaults: {{ignore_compilers: [{IGNORE}], optimization_time: 600}}
jobs:
  - name: bert
    model: bert
    inputs: {inputs.name}
    settings: [{{name: exact}}, {{name: loose, metric_drop_ths: 0.05}}]
  - name: mlp
    model: mlp.pt
    inputs: mlp.npz
"""
    )
    assert cli("sweep", tmp_path / "sweep.yaml", "--quick-measure") == EXIT_OK
    learners = sorted(p.name for p in (tmp_path / "learners").iterdir())
    assert learners == ["bert-exact", "bert-loose", "mlp"]
    for name in learners:
        assert LearnerMetadata.read(tmp_path / "learners" / name).hardware_types()
    rows = read_history(tmp_path / "history").to_pylist()
    assert {r["learner"] for r in rows} == set(learners)
    assert {r["run_kind"] for r in rows} == {"sweep"}
    assert len({r["run_id"] for r in rows}) == 3
    exact = {r["precision"] for r in rows if r["learner"] == "bert-exact"}
    loose = {r["precision"] for r in rows if r["learner"] == "bert-loose"}
    assert exact == {"fp32"} and {"fp16", "int8"} <= loose  # the threshold reached the job


def _make_fake_winner(learner_dir, slowdown):
    """Make the saved winner the fake fp16 (2 ms a call, plus the model) at ``slowdown``."""
    manifest_path = learner_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["entries"].values():
        entry.update(backend="fake", precision="fp16", technique="", knobs={"slowdown": slowdown})
    manifest_path.write_text(json.dumps(manifest))


def _rebench(learners, history, tmp_path, night):
    verdicts = tmp_path / f"night-{night}.json"
    code = cli(
        "rebench",
        learners,
        "--history",
        history,
        "--min-history",
        "2",
        "--threshold",
        "1.0",  # only flag a doubling: the 2-core CI machine is noisy
        "--quick-measure",
        "--json",
        verdicts,
    )
    return code, json.loads(verdicts.read_text())


def _figure(verdicts, role, figure):
    return next(c for c in verdicts["comparisons"] if c["role"] == role and c["figure"] == figure)


@pytest.mark.alone  # judges latencies: another test beside it can make them 40x noisier
def test_rebench_flags_a_planted_regression_and_exits_3(optimized, tmp_path):
    learners, history = tmp_path / "learners", tmp_path / "history"
    shutil.copytree(optimized["out"], learners / "tiny")
    _make_fake_winner(learners / "tiny", slowdown=1)
    for night in (1, 2):  # not enough history to judge yet: never a regression
        code, verdicts = _rebench(learners, history, tmp_path, night)
        assert code == EXIT_OK, verdicts
        assert verdicts["learners"][0]["remeasured"] == 2
    code, verdicts = _rebench(learners, history, tmp_path, 3)  # nothing changed
    steady = _figure(verdicts, "winner", "latency_p50_s")
    assert steady["history"] == 2 and not steady["regressed"]

    # The deployed winner's sleep got 10x longer: 20 ms instead of 2 ms, plus the model's few
    # ms, far over the doubling flagged whatever the tiny model's own time on this machine.
    _make_fake_winner(learners / "tiny", slowdown=10)
    code, verdicts = _rebench(learners, history, tmp_path, 4)
    assert code == EXIT_REGRESSION
    slow = _figure(verdicts, "winner", "latency_p50_s")
    assert slow["regressed"] and slow["history"] == 3, verdicts["comparisons"]
    assert slow["value"] > 2 * slow["median"]
    assert slow["value"] > 0.020
    rows = read_history(history).to_pylist()
    nights = [r for r in rows if r["run_kind"] == "rebench"]
    assert len({r["run_id"] for r in nights}) == 4
    assert {r["role"] for r in nights} == {"winner", "baseline"}
    assert all(r["learner"] == "tiny" and r["model_name"] == "tiny-bert" for r in nights)

    page = tmp_path / "report.html"
    assert cli("report", "--history", history, "--out", page, "--threshold", "1.0") == EXIT_OK
    html = page.read_text()
    assert "regressed figures" in html and "fake fp16 slowdown=10" in html


def test_rebench_without_a_kit_reports_the_learner_and_exits_1(optimized, tmp_path):
    learners = tmp_path / "learners"
    shutil.copytree(optimized["out"], learners / "tiny")
    shutil.rmtree(learners / "tiny" / "rebench")
    code = cli("rebench", learners, "--history", tmp_path / "history", "--quick-measure")
    assert code == 1


def test_cluster_lists_this_machines_hardware_type(local_ray, capsys):
    from speedster_dist.hardware import local_hardware

    assert cli("cluster", "--json") == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "speedster-dist.cluster" and doc["exit_code"] == 0
    described = doc["hardware_types"]
    here = local_hardware()
    assert here is not None
    assert [d["hardware_type"] for d in described] == [here.key]
    assert len(described[0]["nodes"]) == 1
    assert {"torch", "fake"} <= set(described[0]["backends"])
    assert cli("cluster") == EXIT_OK
    assert here.key in capsys.readouterr().out
