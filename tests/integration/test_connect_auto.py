"""cluster="auto" joins only a cluster that was started as one, answers and authenticates.

Another program's Ray on this machine (a plain ``ray.init``, which records nothing) is never
joined; a recorded cluster that was killed, or that refuses this client's token, is skipped
for a private embedded Ray with one line saying why; two default searches at once both
finish. Every Ray here is started in a child process with its own Ray temp folder and home,
on loopback, so no cluster of anyone else on this machine is seen or touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from speedster_dist.testing.registry import backends_environment

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

# Another program's Ray: a plain ray.init, loopback, its own token (what a notebook does).
FOREIGN = textwrap.dedent(
    """
    import os, sys
    os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0",
                      RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=sys.argv[1])
    import ray
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    print(ray.get_runtime_context().gcs_address, flush=True)
    sys.stdin.readline()
    """
)

CONNECT = textwrap.dedent(
    """
    import json, sys
    from speedster_dist.runtime.ray import connect
    how = connect(sys.argv[1])
    import ray
    print(json.dumps({"how": how, "gcs": ray.get_runtime_context().gcs_address}), flush=True)
    ray.shutdown()
    """
)

SEARCH = textwrap.dedent(
    """
    import torch
    from speedster_dist import optimize_model
    from speedster_dist.measure import MeasureSettings
    from speedster_dist.testing import models

    learner = optimize_model(
        models.tiny_mlp(),
        [(torch.randn(2, 16),) for _ in range(3)],
        optimization_time="constrained",
        ignore_compilers=["torchscript", "torch_compile", "onnxruntime", "openvino",
                          "tensorrt", "fake_faulty", "fake_deadly"],
        measure_settings=MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=5,
                                         min_duration_s=0.05),
        verbose=False,
    )
    print("done", sorted({r.candidate.backend for r in learner.results}), flush=True)
    """
)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # Ray's socket paths live under RAY_TMPDIR and may not exceed 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _env(folder: Path, **extra: str) -> dict[str, str]:
    """A child's environment: this checkout, a home and Ray temp folder of its own."""
    (folder / "home").mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(folder / "home"),
        "RAY_TMPDIR": str(folder / "ray"),
        "SPEEDSTER_DIST_CONNECT_TIMEOUT": "30",
        **extra,
    }


@contextlib.contextmanager
def _foreign_ray(folder: Path, token: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Another program's Ray, in its own session (so that all of it can be killed)."""
    process = subprocess.Popen(
        [sys.executable, "-c", FOREIGN, token],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(folder),
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        address = process.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), address
        yield address, process
    finally:
        _kill_group(process)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _connect(folder: Path, cluster: str = "auto", **extra: str) -> tuple[dict, str]:
    """connect(cluster) in a fresh process: what it did, and its stderr."""
    proc = subprocess.run(
        [sys.executable, "-c", CONNECT, cluster],
        env=_env(folder, **extra),
        capture_output=True,
        text=True,
        timeout=180,
    )
    facts = json.loads(proc.stdout.splitlines()[-1]) if proc.returncode == 0 else {}
    return facts, proc.stderr


def _record(folder: Path, address: str) -> None:
    """Where ``ray start`` records its address (RAY_TMPDIR/ray/ray_current_cluster)."""
    record = Path(_env(folder)["RAY_TMPDIR"]) / "ray" / "ray_current_cluster"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(address + "\n")


def test_another_programs_ray_is_not_joined(short_tmp: Path) -> None:
    with _foreign_ray(short_tmp / "other", secrets.token_hex(32)) as (address, _):
        facts, stderr = _connect(short_tmp / "mine")
    assert facts.get("how") == "embedded", stderr
    assert facts["gcs"] != address and facts["gcs"].startswith("127.0.0.1:")


def test_a_recorded_cluster_is_joined_only_with_its_token_and_skipped_once_killed(
    short_tmp: Path,
) -> None:
    token = secrets.token_hex(32)
    mine = short_tmp / "mine"
    with _foreign_ray(short_tmp / "other", token) as (address, process):
        _record(mine, address)
        joined, stderr = _connect(mine, RAY_AUTH_TOKEN=token)
        assert joined == {"how": "existing", "gcs": address}, stderr
        refused, refused_err = _connect(mine)  # no token: the cluster refuses this client
        _kill_group(process)
        killed, killed_err = _connect(mine, RAY_AUTH_TOKEN=token)
    assert refused.get("how") == "embedded" and refused["gcs"] != address, refused_err
    (why,) = [line for line in refused_err.splitlines() if "not joining" in line]
    assert address in why and "InvalidAuthToken" in why and "embedded" in why
    assert killed.get("how") == "embedded" and killed["gcs"] != address, killed_err
    (why,) = [line for line in killed_err.splitlines() if "not joining" in line]
    assert "cannot reach it" in why and "recorded by `ray start`" in why


def test_an_explicit_address_that_never_answers_fails_within_the_limit(short_tmp: Path) -> None:
    with _silent_listener() as address:
        facts, stderr = _connect(short_tmp, address, SPEEDSTER_DIST_CONNECT_TIMEOUT="3")
    assert facts == {}
    error = stderr.strip().splitlines()[-1]  # the exception, as Python prints it last
    assert error.startswith("speedster_dist.errors.ClusterConnectionError: "), stderr
    assert address in error and "within 3 s (SPEEDSTER_DIST_CONNECT_TIMEOUT)" in error


@contextlib.contextmanager
def _silent_listener() -> Iterator[str]:
    """A port that accepts connections and never says a word (not a Ray)."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"127.0.0.1:{server.getsockname()[1]}"


def test_two_default_searches_at_once_beside_another_ray_both_finish(short_tmp: Path) -> None:
    """The README's first command, twice at once, on a machine where another program's Ray
    runs: each search starts its own private Ray and finishes."""
    env = _env(short_tmp / "mine", **backends_environment())  # one machine: one temp folder
    with _foreign_ray(short_tmp / "other", secrets.token_hex(32)):
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", SEARCH],
                env=env,
                cwd=short_tmp,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=400) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err[-3000:]
        assert out.strip().splitlines()[-1] == "done ['fake', 'torch']", out
