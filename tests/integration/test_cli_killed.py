"""The console script in its own process: a sweep killed half-way keeps every finished
trial, and a learner optimized on another hardware type gains a winner for this one.

One ``speedster-dist sweep`` runs in a subprocess with its own embedded Ray, as a machine of
the simulated hardware type ``cpu-old-fleet-2c``. Its first job completes; its second one
reaches the fake backend that hangs, and the whole process group is then killed with
SIGKILL (no clean-up code can run). The rebench test then takes the first job's learner to
this process's local Ray, whose node is of this machine's real type: a type that joined.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from speedster_dist.cli import EXIT_OK, main
from speedster_dist.hardware import SIMULATED_TYPE_ENV, local_hardware
from speedster_dist.learner import load_model
from speedster_dist.results import read_history
from speedster_dist.testing import models
from speedster_dist.testing.fakes import FAKE_BACKENDS
from speedster_dist.testing.registry import backends_environment

from .test_cli import TEXTS, write_tiny_bert

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a sweep process until it hangs

OLD_TYPE = "cpu-old-fleet-2c"
REAL = "torchscript, torch_compile, onnxruntime, openvino, tensorrt"
SWEEP = f"""
out: learners
history: history
concurrency: 1
defaults: {{metric_drop_ths: 0.05, optimization_time: 600}}
jobs:
  - name: a
    model: bert
    inputs: bert-texts.jsonl
    ignore_compilers: [{REAL}, fake_deadly]
  - name: b                     # reaches fake_deadly's "hang" candidate and stays there
    model: bert
    inputs: bert-texts.jsonl
    ignore_compilers: [{REAL}]
    trial_timeout: 600
"""


def _command():
    script = shutil.which("speedster-dist", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "speedster_dist.cli"]


def _rows_of(history, learner):
    try:
        return [r for r in read_history(history).to_pylist() if r["learner"] == learner]
    except (FileNotFoundError, OSError):
        return []


def _kill_session(process):
    """SIGKILL the sweep and every process of its session (its Ray included)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ps = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
        left = [
            int(p) for p, s in (line.split() for line in ps.splitlines()) if int(s) == process.pid
        ]
        if not left:
            return
        for pid in left:  # Ray workers run in their own process groups of the same session
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("killed")
    write_tiny_bert(root / "bert")
    (root / "sweep.yaml").write_text(SWEEP)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({**backends_environment(FAKE_BACKENDS), SIMULATED_TYPE_ENV: OLD_TYPE})
    log = (root / "sweep.log").open("w")
    command = [*_command(), "sweep", "sweep.yaml", "--cluster", "local", "--quick-measure"]
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        while len(_rows_of(root / "history", "b")) < 4:
            assert process.poll() is None, (root / "sweep.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (root / "sweep.log").read_text()[-3000:]
            time.sleep(1)
    finally:
        _kill_session(process)
        log.close()
    return root


def test_a_killed_sweep_keeps_every_trial_that_finished(killed_sweep):
    history = killed_sweep / "history"
    files = [p for p in history.rglob("*") if p.is_file()]
    assert files and all(p.suffix == ".parquet" and not p.name.startswith(".") for p in files)
    for path in files:  # no torn file: each one reads on its own
        assert pq.read_table(path).num_rows == 1
    rows = read_history(history).to_pylist()
    assert len(rows) == len(files)
    first, second = _rows_of(history, "a"), _rows_of(history, "b")
    assert {r["status"] for r in first} >= {"complete", "failed", "rejected"}
    assert len(second) >= 4
    assert {r["hardware_type"] for r in rows} == {OLD_TYPE}
    assert len({r["run_id"] for r in first}) == 1 and len({r["run_id"] for r in second}) == 1
    # The first job finished its learner and kit; the killed one left nothing half-written.
    assert (killed_sweep / "learners" / "a" / "rebench" / "kit.json").is_file()
    assert not (killed_sweep / "learners" / "b" / "manifest.json").exists()


def test_rebench_adds_the_winner_of_a_hardware_type_that_joined(killed_sweep, local_ray, tmp_path):
    learners, history = tmp_path / "learners", tmp_path / "history"
    shutil.copytree(killed_sweep / "learners" / "a", learners / "a")
    shutil.copytree(killed_sweep / "history", history)
    verdicts = tmp_path / "verdicts.json"
    code = main(
        [
            "rebench",
            str(learners),
            "--history",
            str(history),
            "--quick-measure",
            "--json",
            str(verdicts),
        ]
    )
    assert code == EXIT_OK
    local = local_hardware()
    assert local is not None
    here = local.key
    report = json.loads(verdicts.read_text())["learners"][0]
    assert report["added"] == [here] and report["absent"] == [OLD_TYPE]
    assert report["remeasured"] == 0  # nothing of this learner ran on this type before
    learner = load_model(learners / "a", trust_code=True)
    assert set(learner.hardware_types()) == {OLD_TYPE, here}
    assert learner.select().key == here  # this machine now runs its own winner
    batch = models.minilm_tokenizer()(TEXTS[1], return_tensors="pt")
    with torch.inference_mode():
        reference = models.tiny_bert()(**batch).last_hidden_state
    assert torch.allclose(learner(**batch).last_hidden_state, reference, atol=0.05)
    nightly = [r for r in read_history(history).to_pylist() if r["run_kind"] == "rebench"]
    assert {r["hardware_type"] for r in nightly} == {here}
    assert {r["role"] for r in nightly} == {"baseline", "candidate"}
    assert (learners / "a" / "rebench" / "kit.json").is_file()  # the kit survives the update
