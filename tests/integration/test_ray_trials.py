"""Trials as real Ray tasks: crashes, hangs and real backends on an embedded local Ray."""

import contextlib
import gc
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from speedster_dist import optimize_model
from speedster_dist.measure import MeasureSettings, numeric_precision_drop
from speedster_dist.records import DeviceKind, TrialStatus
from speedster_dist.runtime import SearchRequest, run_search
from speedster_dist.runtime.ray import LOOPBACK_ENV, ClusterConnectionError, RayExecutor, connect
from speedster_dist.search import Budget, SpaceSettings
from speedster_dist.testing import models
from speedster_dist.testing.backend_contract import contract_payload

from .conftest import descendants, free_port

pytestmark = pytest.mark.integration
FAST = MeasureSettings(
    warmup_calls=2, warmup_s=0, min_calls=10, min_duration_s=0.1, load_check=False
)


def _payload(ths=None):
    return contract_payload("mlp", ths, FAST)


def test_crash_and_hang_become_failed_trials_and_the_search_completes(local_ray):
    executor = RayExecutor(trial_timeout_s=8)
    settings = SpaceSettings(
        metric_drop_ths=None,
        baseline_backend="fake",
        ignored_backends=frozenset(
            {
                "torch",
                "torchscript",
                "torch_compile",
                "onnxruntime",
                "openvino",
                "tensorrt",
                "fake_faulty",
            }
        ),
    )
    started = time.monotonic()
    budget = Budget(math.inf, False, "test")
    outcome = run_search(
        executor, SearchRequest(payload=_payload(), settings=settings, budget=budget)
    )
    results = {r.candidate.technique or r.candidate.backend: r for r in outcome.results}
    assert results["crash"].status is TrialStatus.FAILED
    assert "Worker" in results["crash"].reason or "crash" in results["crash"].reason.lower()
    assert results["hang"].status is TrialStatus.FAILED
    assert "timed out after 8 s" in results["hang"].reason
    assert results["fake"].ok and results["fake"].is_baseline
    assert next(iter(outcome.winners.values())).candidate.backend == "fake"
    assert time.monotonic() - started < 60
    # The hung trial's node was freed: a new task runs promptly.
    assert (
        local_ray.get(local_ray.remote(lambda: 42).options(num_cpus=2).remote(), timeout=30) == 42
    )


def _my_processes_titled(title: str) -> list[int]:
    """This process's descendants (its embedded Ray's workers) whose title starts with
    ``title`` (another test's Ray on this machine has its own)."""
    found = []
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            if command.startswith(title):
                found.append(pid)
    return found


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc")
def test_the_run_clock_actor_never_imports_torch(local_ray):
    """The small actor that marks when trials start is shipped by value: its worker process
    imports neither this package nor torch (1.3 s of CPU per search on 2 cores). It lives as
    long as the job, not as the executor that started it."""
    from speedster_dist.runtime.ray._run_clock import StartMarks

    first = StartMarks()
    assert isinstance(first.started(), set)  # it is up and answers
    del first  # a finished search's executor goes: the job's clock stays for the next one
    gc.collect()
    marks = StartMarks()
    assert isinstance(marks.started(), set)
    (clock,) = _my_processes_titled("ray::Clock")
    assert "libtorch" not in Path(f"/proc/{clock}/maps").read_text()


@pytest.mark.slow
def test_real_backends_on_tiny_bert_through_ray(local_ray, tmp_path):
    model = models.tiny_bert()
    data = [models.token_batch(seq_len=n, seed=i) for i, n in enumerate([16, 12, 16, 8, 16])]
    learner = optimize_model(
        model,
        data,
        metric_drop_ths=0.05,
        measure_settings=FAST,
        progress=False,
        # The fake backends of this module's Ray (one of them hangs on purpose) are not real.
        ignore_compilers=["torch_compile", "fake", "fake_faulty", "fake_deadly"],
        # int8 (NNCF's builds and back-off alone took 15 s here) is tested in-process; every
        # real CPU backend still crosses Ray, in fp32 and bf16.
        ignore_compressors=["int8"],
        store_latencies=True,
    )
    results = learner.results
    backends = {r.candidate.backend for r in results}
    assert {"torch", "onnxruntime", "openvino", "torchscript"} <= backends
    baseline = [r for r in results if r.is_baseline]
    assert len(baseline) == 1 and baseline[0].ok
    node_ids = {r.node_id for r in results}
    assert len(node_ids) == 1 and "" not in node_ids
    # Each trial reserved the node's 2 CPUs and torch ran on both, whatever the Ray worker
    # ran before (a zero-CPU probe leaves torch on one thread in a reused worker).
    assert {dict(r.extra)["torch_threads"] for r in results} == {2}
    for r in results:
        assert r.status in (TrialStatus.COMPLETE, TrialStatus.REJECTED), (
            f"{r.candidate.label}: {r.reason}"
        )
        if r.status is TrialStatus.REJECTED:
            assert r.metric_drop is not None and r.metric_drop > 0.05
    out = learner(**data[1])
    with torch.inference_mode():
        ref = model(**data[1])
    assert type(out) is type(ref)
    assert numeric_precision_drop([(ref.last_hidden_state,)], [(out.last_hidden_state,)]) <= 0.05
    assert "Hardware type" in learner.summary and "improvement" in learner.summary


def test_unreachable_address_fails_fast():
    started = time.monotonic()
    with pytest.raises(ClusterConnectionError, match="cannot reach"):
        connect("127.0.0.1:1")
    with pytest.raises(ClusterConnectionError, match="not host:port"):
        connect("nonsense")
    assert time.monotonic() - started < 15


@pytest.mark.slow  # a `ray start` head in its own process
def test_auto_joins_a_ray_start_cluster_by_ray_address_or_by_its_record():
    """`ray start --head` with a Ray temp folder and home of its own (it records its address
    and may write a token there, never in this machine's /tmp/ray or ~/.ray): auto joins it
    through RAY_ADDRESS, and through the address it recorded."""
    port = str(free_port())
    folder = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))  # socket paths stay short
    (folder / "home").mkdir()
    env = {
        **os.environ,
        **LOOPBACK_ENV,
        "RAY_USAGE_STATS_ENABLED": "0",
        "HOME": str(folder / "home"),
        "RAY_TMPDIR": str(folder / "ray"),
    }
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=1",
            "--include-dashboard=false",
            "--block",
            '--resources={"marker_of_this_cluster": 1}',
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        script = (
            "from speedster_dist.runtime.ray import connect\n"
            "how = connect('auto')\n"
            "import ray\n"
            "print(how, ray.cluster_resources().get('marker_of_this_cluster'))\n"
        )
        _wait_for_port(int(port), head)  # then one client, not one per second of boot
        record = folder / "ray" / "ray" / "ray_current_cluster"
        outputs = []
        for extra in ({"RAY_ADDRESS": f"127.0.0.1:{port}"}, {}):
            out = ""
            for _ in range(3):  # its control store may take a moment more than its port
                proc = subprocess.run(
                    [sys.executable, "-c", script],
                    env={**env, **extra},
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                out = proc.stdout + proc.stderr[-2000:]
                if proc.returncode == 0:
                    break
                time.sleep(1)
            outputs.append(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else out)
        assert record.read_text().strip().endswith(f":{port}")
        assert outputs == ["address 1.0", "existing 1.0"], outputs
    finally:
        _stop_group(head)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_port(port, process, timeout_s=90.0):
    """Until something listens on 127.0.0.1:``port`` (``process`` still running)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the head exited while starting"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:g} s")


def _stop_group(process):
    """Stop a `ray start --block` head and every process it started (same session)."""
    os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # raylet/gcs may outlive a terminated parent
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_device_argument_filters_hardware(local_ray):
    with pytest.raises(ValueError, match="no gpu node"):
        optimize_model(models.tiny_mlp(), [torch.randn(1, 16)], device="gpu", progress=False)
    assert DeviceKind.CPU.value == "cpu"


def test_generation_trials_through_ray(local_ray):
    """A generation search on Ray: trials and the confirmation as Ray tasks (the Hugging Face
    model in the object store), the learner generating as Hugging Face does."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=64)
    model = GPT2LMHeadModel(config).eval()
    gen = torch.Generator().manual_seed(1)
    prompts = [{"input_ids": torch.randint(2, 100, (1, 7), generator=gen)} for _ in range(5)]
    learner = optimize_model(
        model,
        prompts,
        max_new_tokens=5,
        measure_settings=FAST,
        progress=False,
        confirm_rounds=2,
        ignore_compilers=["generate_openvino", "generate_torch_compile"],
    )
    assert {r.candidate.backend for r in learner.results} == {
        "generate_torch",
        "generate_onnxruntime",
    }
    for r in learner.results:
        assert r.ok, f"{r.candidate.label}: {r.reason}"
        assert r.generation is not None and r.generation.agreement == 1.0
        assert r.node_id
    ids = prompts[0]["input_ids"]
    with torch.no_grad():
        expected = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5,
            do_sample=False, pad_token_id=0,
        )  # fmt: skip
    assert torch.equal(learner.generate(input_ids=ids, max_new_tokens=5), expected)
    assert "tokens/s (batch 1, 5 new)" in learner.summary
