"""A heterogeneous Ray cluster on one machine: 3 nodes of 2 simulated hardware types.

Nodes get their hardware type from the Ray node label ``speedster-dist/hardware-type``. The
``typed`` backend below (registered for the workers through ``SPEEDSTER_DIST_BACKENDS``)
is a sleep-based fake whose fastest precision differs by type, so each type must find its
own winner.
"""

from __future__ import annotations

import itertools
import math
import os
import time
import warnings
from collections import defaultdict
from dataclasses import replace
from typing import Any

import pytest
import torch

from speedster_dist import hardware as _hardware
from speedster_dist.artifacts import PORTABLE_KEY
from speedster_dist.hardware import HARDWARE_LABEL, SIMULATED_TYPE_ENV
from speedster_dist.learner import load_model
from speedster_dist.measure import MeasureSettings
from speedster_dist.present import format_summary
from speedster_dist.records import Precision, TrialStatus
from speedster_dist.runtime import SearchHooks, SearchRequest, run_search
from speedster_dist.runtime.ray import RayExecutor
from speedster_dist.search import Budget, SpaceSettings
from speedster_dist.testing.backend_contract import contract_payload
from speedster_dist.testing.fakes import FAKE_BACKENDS, Behaviour, FakeBackend
from speedster_dist.testing.registry import backends_environment

from .conftest import ray_cluster

pytestmark = pytest.mark.integration

TYPE_A, TYPE_B, TYPE_C, TYPE_D = "cpu-sim-a", "cpu-sim-b", "cpu-sim-c", "cpu-sim-d"
UNLIMITED = Budget(math.inf, tune_knobs=True, label="test")
# Long enough that trials overlap in time across nodes; short enough for a quick suite.
MEASURE = MeasureSettings(
    warmup_calls=1, warmup_s=0, min_calls=10, min_duration_s=0.4, load_check=False
)


class _TypedFake:
    """A fake backend whose behaviour depends on the hardware type it is built for."""

    name = "typed"

    def __init__(self) -> None:
        fp32, fp16 = (Precision.FP32, ""), (Precision.FP16, "")
        table = {
            TYPE_A: {fp32: Behaviour(0.004, 0.2), fp16: Behaviour(0.002, 0.2, 0.004)},
            TYPE_B: {fp32: Behaviour(0.003, 1.0), fp16: Behaviour(0.006, 1.0, 0.004)},
            TYPE_C: {fp32: Behaviour(0.004, 3.0), fp16: Behaviour(0.004, 3.0, 0.004)},
        }
        self._fakes = {key: FakeBackend(self.name, t) for key, t in table.items()}
        self.capabilities = self._fakes[TYPE_A].capabilities
        self.knobs = self._fakes[TYPE_A].knobs

    def unavailable_reason(self, device):
        return self._fakes[TYPE_A].unavailable_reason(device)

    def build(self, model, calibration, config, workdir):
        key = config.hardware.key if config.hardware is not None else TYPE_A
        return self._fakes.get(key, self._fakes[TYPE_A]).build(model, calibration, config, workdir)

    def load(self, directory, options, device):
        return self._fakes[TYPE_A].load(directory, options, device)


BACKEND = _TypedFake()
BACKENDS = f"{FAKE_BACKENDS},typed={__name__}:BACKEND"
ONLY_TYPED = frozenset(
    {
        "torch",
        "torchscript",
        "torch_compile",
        "onnxruntime",
        "openvino",
        "tensorrt",
        "fake",
        "fake_faulty",
        "fake_deadly",
    }
)


@pytest.fixture(scope="module")
def cluster():
    """Head (no CPU: it only coordinates) + a1, a2 of type A and b1 of type B, 1 CPU each."""
    with ray_cluster(BACKENDS) as cl:
        nodes = {
            name: cl.add_node(num_cpus=1, labels={HARDWARE_LABEL: key})
            for name, key in (("a1", TYPE_A), ("a2", TYPE_A), ("b1", TYPE_B))
        }
        yield cl, nodes


def _payload(ths=0.01):
    return contract_payload("mlp", ths, MEASURE)


def _settings(ignored=ONLY_TYPED, baseline="typed"):
    return SpaceSettings(
        metric_drop_ths=0.01, tune_knobs=True, baseline_backend=baseline, ignored_backends=ignored
    )


def _search(executor, payload=None, settings=None, **kw):
    request = SearchRequest(
        payload=payload or _payload(),
        settings=settings or _settings(),
        budget=UNLIMITED,
        poll_s=0.2,
        **kw,
    )
    return run_search(executor, request)


def _type_of(node_ids_by_type, node_id):
    return next(k for k, ids in node_ids_by_type.items() if node_id in ids)


def test_each_type_gets_its_own_winner_on_its_own_nodes_one_trial_at_a_time(cluster):
    _, nodes = cluster
    by_type = {
        TYPE_A: {nodes["a1"].node_id, nodes["a2"].node_id},
        TYPE_B: {nodes["b1"].node_id},
    }
    executor = RayExecutor(trial_timeout_s=120, refresh_s=0.5)
    started = time.monotonic()
    outcome = _search(executor)
    wall = time.monotonic() - started

    # fp32 and fp16 with slowdown 1, 2, 4 on each type, all completed.
    assert len(outcome.results) == 12
    assert all(r.status is TrialStatus.COMPLETE for r in outcome.results), [
        r.reason for r in outcome.results
    ]
    # Each type found its own winner: fp16 is faster on A, slower on B.
    assert set(outcome.winners) == {TYPE_A, TYPE_B}
    assert outcome.winners[TYPE_A].candidate.label == "typed fp16 slowdown=1"
    assert outcome.winners[TYPE_B].candidate.label == "typed fp32 slowdown=1"
    assert outcome.winners[TYPE_B].latency.p50 == pytest.approx(0.003, abs=0.002)

    # Every trial ran on a node of its own type; both A nodes shared A's trials.
    for r in outcome.results:
        assert r.node_id in by_type[r.candidate.hardware_key], r
    assert {r.node_id for r in outcome.results if r.candidate.hardware_key == TYPE_A} == (
        by_type[TYPE_A]
    )
    # No two trials overlapped on one node.
    per_node = defaultdict(list)
    for r in outcome.results:
        assert 0 < r.started_at < r.finished_at
        per_node[r.node_id].append((r.started_at, r.finished_at))
    for windows in per_node.values():
        windows.sort()
        for (_, end), (start, _) in itertools.pairwise(windows):
            assert start >= end
    # ...while different types (and the two A nodes) did run at the same time.
    a_windows = [
        (r.started_at, r.finished_at) for r in outcome.results if r.node_id in by_type[TYPE_A]
    ]
    b_windows = [
        (r.started_at, r.finished_at) for r in outcome.results if r.node_id in by_type[TYPE_B]
    ]
    assert any(s1 < e2 and s2 < e1 for s1, e1 in a_windows for s2, e2 in b_windows)
    span = max(e for _, e in a_windows + b_windows) - min(s for s, _ in a_windows + b_windows)
    busy = [sum(e - s for s, e in windows) for windows in (a_windows, b_windows)]
    assert span < 0.8 * sum(busy) and span < wall  # in parallel, not one after the other

    summary = format_summary(outcome)
    assert "Fleet: 2 hardware types" in summary
    assert f"Fastest hardware type for this model: {TYPE_A}" in summary
    base_b = outcome.baseline(TYPE_B).latency.p50
    assert f"{base_b / outcome.winners[TYPE_B].latency.p50:.2f}x" in summary
    assert outcome.portable is not None and outcome.portable.files


@pytest.mark.slow  # nodes killed and started mid-search
def test_nodes_leaving_and_joining_mid_search(cluster):
    """A node of A (which has another) and the only node of C leave while they measure;
    a node of a new type D joins. A's lost trial is retried, C has no winner and says why,
    D is searched too, and the search completes with every other result."""
    import ray

    cl, _ = cluster
    spare_a = cl.add_node(num_cpus=1, labels={HARDWARE_LABEL: TYPE_A})
    only_c = cl.add_node(num_cpus=1, labels={HARDWARE_LABEL: TYPE_C})
    executor = RayExecutor(trial_timeout_s=120, refresh_s=0.5)
    events: dict[str, Any] = {}

    def on_result(result):
        # Strike while spare_a measures (white box: the executor's running trials), and
        # while C's only node builds its first candidate (3 s).
        running = {r.node_id for r in executor._running.values()}
        if events or not {spare_a.node_id, only_c.node_id} <= running:
            return
        events["removed"] = (spare_a.node_id, only_c.node_id)
        cl.remove_node(spare_a, allow_graceful=False)
        cl.remove_node(only_c, allow_graceful=False)
        events["added"] = cl.add_node(num_cpus=1, labels={HARDWARE_LABEL: TYPE_D}).node_id

    outcome = _search(executor, hooks=SearchHooks(on_result=on_result))

    assert events, "the nodes to remove were never both busy"
    assert ray.is_initialized()
    # C is gone: its running trial is lost with the reason, and it has no winner.
    assert TYPE_C in outcome.no_winner and "left the cluster" in outcome.no_winner[TYPE_C]
    lost_c = [r for r in outcome.results if r.candidate.hardware_key == TYPE_C]
    assert len(lost_c) == 1 and lost_c[0].status is TrialStatus.FAILED
    assert lost_c[0].reason.startswith("lost: node") and "no other node" in lost_c[0].reason
    # A and B lost nothing: every trial completed, A's interrupted one after a retry.
    for key in (TYPE_A, TYPE_B):
        mine = [r for r in outcome.results if r.candidate.hardware_key == key]
        assert len(mine) == 6 and all(r.ok for r in mine), [r.reason for r in mine]
    retried = [r for r in outcome.results if dict(r.extra).get("retried_after")]
    assert executor.stats["retries"] == 1 and len(retried) == 1
    assert retried[0].candidate.hardware_key == TYPE_A
    assert retried[0].node_id not in events["removed"]
    assert spare_a.node_id[:12] in dict(retried[0].extra)["retried_after"]
    # The new type was searched from the moment its node joined.
    assert outcome.joined_late == [TYPE_D]
    assert TYPE_D in outcome.winners
    assert {r.node_id for r in outcome.results if r.candidate.hardware_key == TYPE_D} == {
        events["added"]
    }
    summary = format_summary(outcome)
    assert "its nodes left mid-search" in summary and "joined mid-search" in summary
    assert "1 trial(s) retried after a node left" in summary
    # Leave the shared cluster as found: Ray lists a killed node as alive until its health
    # checks fail, and the next test's discovery would take it for a live node of type A.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and any(
        n["Alive"] for n in ray.nodes() if n["NodeID"] in events["removed"]
    ):
        time.sleep(1)


def test_onnx_export_is_made_once_and_shared_by_every_node(cluster):
    ignored = ONLY_TYPED - {"torch", "onnxruntime"} | {"typed"}
    settings = replace(_settings(ignored, baseline="torch"), tune_knobs=False)
    executor = RayExecutor(trial_timeout_s=300, refresh_s=0.5)
    outcome = _search(executor, _payload(ths=None), settings)
    ort = [r for r in outcome.results if r.candidate.backend == "onnxruntime"]
    keys = {r.candidate.hardware_key for r in ort}
    assert keys >= {TYPE_A, TYPE_B}
    assert all(r.ok for r in ort), [r.reason for r in ort]
    assert executor.stats["exports"] == 1
    shared = {dict(r.extra).get("onnx_export") for r in ort}
    assert len(shared) == 1
    export = next(iter(shared))
    assert export is not None and export.startswith("shared:")
    assert len({r.node_id for r in ort}) == len(ort)  # several nodes, one export


def test_save_on_one_type_load_on_another(cluster, tmp_path, monkeypatch):
    from speedster_dist import optimize_model
    from speedster_dist.testing import models

    model = models.tiny_mlp()
    data = [((torch.randn(2, 16),), torch.tensor([0, 1])) for _ in range(5)]
    learner = optimize_model(
        model,
        [d[0] for d in data],
        metric_drop_ths=0.01,
        ignore_compilers=sorted(ONLY_TYPED - {"torch"}),
        measure_settings=MEASURE,
        executor=RayExecutor(trial_timeout_s=120, refresh_s=0.5),
        progress=False,
    )
    assert set(learner.hardware_types()) >= {TYPE_A, TYPE_B}
    path = learner.save(tmp_path / "fleet")
    x = data[0][0][0]
    with torch.inference_mode():
        expected = model(x)

    def load_as(simulated, **kw):
        monkeypatch.setenv(SIMULATED_TYPE_ENV, simulated)
        _hardware.local_cpu.cache_clear()
        try:
            return load_model(path, trust_code=True, **kw)
        finally:
            _hardware.local_cpu.cache_clear()

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # its own type: no fallback warning
        own = load_as(TYPE_B)
    assert own.selection.how == "own" and own.selection.key == TYPE_B
    with pytest.warns(UserWarning, match="closest compatible winner"):
        other = load_as("cpu-sim-elsewhere")
    assert other.selection.how == "compatible"
    assert other.selection.key in learner.hardware_types()
    torch.testing.assert_close(other(x), expected, rtol=1e-2, atol=1e-3)
    portable = load_as("cpu-sim-elsewhere", hardware_key=PORTABLE_KEY)
    assert portable.selection.key == PORTABLE_KEY
    torch.testing.assert_close(portable(x), expected, rtol=1e-4, atol=1e-5)


_SHIPPED_SCRIPT = """
import json, sys
import ray
from speedster_dist.runtime.ray import RayExecutor, connect, package_runtime_env

connect(sys.argv[1], package_runtime_env())

@ray.remote(num_cpus=0)
def where():
    import os
    marker = os.path.join("speedster_dist", "py.typed")
    shipped = [
        p for p in sys.path if "runtime_resources" in p and os.path.isfile(os.path.join(p, marker))
    ]
    return shipped, os.environ.get("SPEEDSTER_DIST_BACKENDS")

groups = RayExecutor().discover()
print(json.dumps({"where": ray.get(where.remote()), "types": [g.hardware.key for g in groups]}))
"""


def test_runtime_env_ships_the_package_to_workers(cluster, tmp_path):
    """A driver that connects with ``package_runtime_env()``: its workers get the uploaded
    copy of speedster_dist on their path and see the backend plugins. (Here the package is
    installed on the nodes too, so which copy wins an import is not the point.)"""
    import json
    import subprocess
    import sys

    cl, _ = cluster
    proc = subprocess.run(
        [sys.executable, "-c", _SHIPPED_SCRIPT, cl.address],
        env={**os.environ, **backends_environment(BACKENDS)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    shipped, backends = found["where"]
    assert shipped and all("py_modules" in p for p in shipped), shipped
    assert backends == BACKENDS
    assert {TYPE_A, TYPE_B} <= set(found["types"])
