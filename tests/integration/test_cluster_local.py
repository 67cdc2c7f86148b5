"""cluster/local.sh: a real head + 3 nodes on loopback with token authentication; a driver
finds it through RAY_ADDRESS, ships the package with runtime_env="package", and gets one
winner per simulated type. A client without the token is refused. The cluster is never
recorded as the machine's default one (what `ray.init(address="auto")` joins)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speedster_dist.runtime.ray import LOOPBACK_ENV
from speedster_dist.testing.fakes import FAKE_BACKENDS
from speedster_dist.testing.registry import backends_environment

from .conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a 4-node cluster by `ray start`

ROOT = Path(__file__).resolve().parents[2]


PORT = free_port()
# The cluster's token, in the environment only: local.sh would otherwise write one to
# ~/.ray/auth_token, which every other Ray of this user on this machine then reads.
TOKEN = secrets.token_hex(32)

_DRIVER = """
import json
import ray
import torch
from speedster_dist import optimize_model
from speedster_dist.measure import MeasureSettings
from speedster_dist.testing import models

data = [(torch.randn(2, 16),) for _ in range(5)]
learner = optimize_model(
    models.tiny_mlp(),
    data,
    metric_drop_ths=0.01,
    ignore_compilers=["torchscript", "torch_compile", "onnxruntime", "openvino", "tensorrt",
                      "fake_faulty", "fake_deadly"],
    measure_settings=MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=10, min_duration_s=0.1),
    progress=False,
    runtime_env="package",
)
label = "speedster-dist/hardware-type"
nodes = {n["NodeID"]: (n.get("Labels") or {}).get(label) for n in ray.nodes()}
print(json.dumps({
    "types": sorted(learner.hardware_types()),
    "ran_on": sorted({nodes[r.node_id] for r in learner.results}),
    "trials": len(learner.results),
    "portable": learner.portable is not None,
    "summary": learner.summary,
}))
"""

_NO_TOKEN = """
import ray
try:
    ray.init(address="127.0.0.1:%d", log_to_driver=False)
    print("CONNECTED")
except Exception as exc:
    print("REFUSED", type(exc).__name__)
"""


def _local_sh(command: str, state: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "SPEEDSTER_CLUSTER_PORT": str(PORT),
        "SPEEDSTER_CLUSTER_DIR": str(state),
        "PYTHON": sys.executable,
        "RAY_AUTH_TOKEN": TOKEN,
        **env,
    }
    return subprocess.run(
        ["bash", str(ROOT / "cluster" / "local.sh"), command],
        env=full,
        capture_output=True,
        text=True,
        timeout=240,
    )


# Another Ray's record of this user's default cluster, where Ray keeps it
# (RAY_TMPDIR/ray/ray_current_cluster): the local cluster must neither replace nor remove it.
THEIR_ADDRESS = "127.0.0.1:1"


def _default_record(ray_tmpdir: Path) -> Path:
    record = ray_tmpdir / "ray" / "ray_current_cluster"
    record.parent.mkdir(parents=True)
    record.write_text(THEIR_ADDRESS)
    return record


def _private_root(state: Path) -> Path:
    """The cluster's own Ray temp root, as its supervisor logged it."""
    lines = (state / "cluster.log").read_text().splitlines()
    return Path(next(x for x in lines if x.startswith("ray temp dir: ")).split(": ", 1)[1])


def test_local_cluster_up_status_search_down(tmp_path):
    state = tmp_path / "cluster"
    default = _default_record(tmp_path / "default")
    up = _local_sh("up", state, RAY_TMPDIR=str(tmp_path / "default"))
    try:
        assert up.returncode == 0, up.stdout + up.stderr + (state / "cluster.log").read_text()
        assert f"export RAY_ADDRESS=127.0.0.1:{PORT}" in up.stdout
        assert "RAY_AUTH_MODE=token" in up.stdout
        # Recorded in the cluster's own temp root only (short: Ray's socket paths live there).
        root = _private_root(state)
        assert root.parent == Path("/tmp") and root.name.startswith("sdr-")
        assert (root / "ray" / "ray_current_cluster").read_text() == f"127.0.0.1:{PORT}"
        assert default.read_text() == THEIR_ADDRESS
        sockets = sorted(root.glob("ray/session_latest/sockets/raylet*"))
        assert len(sockets) == 4  # the head and the three nodes, all under it
        status = _local_sh("status", state)
        assert status.returncode == 0, status.stderr
        assert status.stdout.count(" alive 127.0.0.1 ") == 4
        assert status.stdout.count("cpu-sim-a") == 2 and "cpu-sim-b" in status.stdout
        assert "(head: coordinates only)" in status.stdout

        drop = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")
        client_env = {k: v for k, v in os.environ.items() if k not in drop}
        client_env.update(LOOPBACK_ENV)
        # The nodes were started without the fake backends: runtime_env="package" passes
        # the driver's SPEEDSTER_DIST_BACKENDS (and the package) to their workers.
        driver = subprocess.Popen(
            [sys.executable, "-c", _DRIVER],
            env={
                **client_env,
                # What local.sh's exports say (the driver imports ray before speedster_dist,
                # so the token mode must be in the environment already).
                "RAY_ADDRESS": f"127.0.0.1:{PORT}",
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN": TOKEN,
                **backends_environment(FAKE_BACKENDS),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started = time.monotonic()
        stranger = subprocess.run(
            [sys.executable, "-c", _NO_TOKEN % PORT],
            env={**client_env, "RAY_AUTH_MODE": "disabled"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert stranger.stdout.strip().startswith("REFUSED"), stranger.stdout + stranger.stderr
        out, err = driver.communicate(timeout=240)
        assert driver.returncode == 0, err[-3000:]
        found = json.loads(out.strip().splitlines()[-1])
        assert found["types"] == ["cpu-sim-a", "cpu-sim-b"]
        assert found["ran_on"] == ["cpu-sim-a", "cpu-sim-b"]
        assert found["portable"] and "Fleet: 2 hardware types" in found["summary"]
        assert time.monotonic() - started < 200
    finally:
        down = _local_sh("down", state)
    assert down.returncode == 0 and "down" in down.stdout
    assert default.read_text() == THEIR_ADDRESS  # not replaced, not removed at shutdown
    assert not root.exists()
    assert _local_sh("status", state).stdout.strip() == "not up"
    leftover = subprocess.run(["pgrep", "-f", f"local_cluster.py {PORT}"], capture_output=True)
    assert leftover.returncode == 1  # nothing of it is left running
