"""A search through Ray Client (``cluster="ray://host:port"``) on a local loopback cluster.

The cluster is a head (no CPU) with Ray's client server and one 1-CPU node of group ``cpu-a``.
The search runs in a child process that connects only as a Ray Client, as a user's laptop
would; this process starts the cluster and never connects to it, so nothing it does can
stand in for the client's own connection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from speedster_dist import LearnerMetadata
from speedster_dist.cli import EXIT_OK
from speedster_dist.hardware import HARDWARE_LABEL
from speedster_dist.results import read_history
from speedster_dist.runtime import GROUP_LABEL
from speedster_dist.testing.fakes import FAKE_BACKENDS

from .conftest import free_port, ray_cluster
from .test_cli import IGNORE
from .test_sweep_processes import _mlp

pytestmark = pytest.mark.integration

HARDWARE = "cpu-sim-client"
GROUP_WAIT_S = 3

# The user's side: optimize_model through ray://, then what it knows, as one JSON line.
CHILD = textwrap.dedent(
    """
    import json, sys
    import torch
    from speedster_dist import optimize_model
    from speedster_dist.measure import MeasureSettings
    from speedster_dist.testing import models

    address, ignore, out, wait = sys.argv[1:5]
    model = models.tiny_mlp()
    data = [torch.randn(2, 16, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    learner = optimize_model(
        model,
        data,
        metric_drop_ths=0.05,
        cluster=address,
        optimization_time=60,
        ignore_compilers=ignore.split(","),
        measure_settings=MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=5,
                                         min_duration_s=0.05),
        node_groups=["cpu-a", "gpu-never"],
        group_wait=float(wait),
        confirm_rounds=1,
        progress=False,
    )
    import ray
    from ray.util.client import ray as client

    def demand_now():
        from ray._private.ray_constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)
        return None if raw is None else json.loads(raw)

    read = ray.remote(num_cpus=0)(demand_now)
    key = learner.hardware_types()[0]
    with torch.inference_mode():
        diff = (learner.for_hardware(key)(data[0]) - model(data[0])).abs().max().item()
    learner.save(out)
    facts = {
        "client": client.is_connected(),
        "types": learner.hardware_types(),
        "trials": [
            [r.candidate.hardware_key, r.node_id, r.status.value, r.is_baseline]
            for r in learner.results
        ],
        "summary": learner.summary,
        "demand_after": ray.get(read.remote(), timeout=60),
        "diff": diff,
    }
    print("FACTS " + json.dumps(facts), flush=True)
    """
)


@pytest.fixture(scope="module")
def client_cluster():
    """Head with a Ray Client server on 127.0.0.1, and one node of group cpu-a; token
    authentication on, as a cluster of ``ray start`` with a token is. Yields (address, env
    for the client processes, the node's id)."""
    # The client server forks one server per client from a process busy with gRPC; gRPC's
    # fork handlers then crash that child now and then (ray-project/ray#63202). It always
    # execs at once, so the handlers are not needed.
    with pytest.MonkeyPatch.context() as patcher:
        patcher.setenv("GRPC_ENABLE_FORK_SUPPORT", "false")
        port = free_port()
        # This process stays off Ray here: the client processes are the only drivers.
        with ray_cluster(FAKE_BACKENDS, connect=False, ray_client_server_port=port) as cl:
            node = cl.add_node(num_cpus=1, labels={HARDWARE_LABEL: HARDWARE, GROUP_LABEL: "cpu-a"})
            # The token goes with the client's environment, the auth mode it finds itself.
            drop = ("RAY_ADDRESS", "RAY_AUTH_MODE")
            env = {k: v for k, v in os.environ.items() if k not in drop}
            yield f"ray://127.0.0.1:{port}", env, node.node_id


def test_optimize_model_through_ray_client(client_cluster, tmp_path):
    address, env, node_id = client_cluster
    run = subprocess.run(
        [sys.executable, "-c", CHILD, address, IGNORE, tmp_path / "learner", str(GROUP_WAIT_S)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("FACTS ")]
    assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-3000:]
    facts = json.loads(lines[0][len("FACTS ") :])
    assert facts["client"] is True  # the search's driver was a Ray Client, not a local Ray
    assert facts["types"] == [HARDWARE]
    trials = facts["trials"]
    assert len(trials) > 1
    assert {(key, node) for key, node, *_ in trials} == {(HARDWARE, node_id)}
    assert [t for t in trials if t[3] and t[2] == "complete"]  # the baseline was measured
    assert facts["diff"] < 0.05  # the winner computes the model's outputs
    # The demand went through Ray Client (a task in the cluster): cpu-a came up, gpu-never
    # is reported as never having joined, not as a demand that could not be sent ...
    summary = facts["summary"]
    assert f"gpu-never: no node of it joined within {GROUP_WAIT_S} s" in summary
    assert "cpu-a:" not in summary and "could not be sent" not in summary
    assert facts["demand_after"] == []  # ... and was released at the end.
    saved = LearnerMetadata.read(tmp_path / "learner")
    assert saved.hardware_types() == [HARDWARE]


@pytest.mark.slow  # a sweep's job processes, each a Ray Client
def test_a_sweep_through_ray_client(client_cluster, tmp_path):
    """`speedster-dist sweep --cluster ray://...`: the sweep and its job process are both
    Ray Clients of the cluster."""
    address, env, node_id = client_cluster
    _mlp(tmp_path)
    (tmp_path / "sweep.yaml").write_text(
        f"""
out: learners
history: history
concurrency: 1
defaults: {{ignore_compilers: [{IGNORE}], optimization_time: 60, metric_drop_ths: 0.05}}
jobs:
  - name: mlp
    model: mlp.pt
    inputs: mlp.npz
"""
    )
    args = ["sweep", str(tmp_path / "sweep.yaml"), "--cluster", address, "--quick-measure"]
    run = subprocess.run(
        [sys.executable, "-m", "speedster_dist.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == EXIT_OK, run.stdout[-3000:] + run.stderr[-3000:]
    assert LearnerMetadata.read(tmp_path / "learners" / "mlp").hardware_types() == [HARDWARE]
    rows = read_history(tmp_path / "history").to_pylist()
    assert len(rows) > 1 and {(r["hardware_type"], r["node_id"]) for r in rows} == {
        (HARDWARE, node_id)
    }
