"""An embedded Ray is private by default: loopback only, token auth, no usage statistics.

Run in a fresh process that sets nothing itself (only a private HOME and Ray temp folder, so
that no cluster recorded on this machine and no token file of the user is picked up).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import descendants

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc"),
]

CHILD = textwrap.dedent(
    """
    import json, os, sys
    from speedster_dist.runtime.ray import connect

    how = connect("auto")
    import ray

    facts = {
        "how": how,
        "nodes": sorted({n["NodeManagerAddress"] for n in ray.nodes()}),
        "gcs": ray.get_runtime_context().gcs_address,
        "auth": os.environ.get("RAY_AUTH_MODE"),
        "usage_stats": os.environ.get("RAY_USAGE_STATS_ENABLED"),
        "pid": os.getpid(),
    }
    print(json.dumps(facts), flush=True)
    sys.stdin.readline()  # the parent inspects the sockets, then lets us go
    ray.shutdown()
    """
)


def _socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def _listening(inodes: set[str]) -> set[str]:
    """Local addresses (hex, as /proc writes them) of listening TCP sockets among ``inodes``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(fields[1].split(":")[0])
    return found


LOOPBACK_HEX = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # Ray's socket paths live under RAY_TMPDIR and may not exceed 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _private_env(folder: Path) -> dict[str, str]:
    """A child's environment that sets nothing of Ray's: only a home and Ray temp folder of its
    own (no cluster recorded on this machine, no token file of the user)."""
    (folder / "home").mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder / "home"),
        "RAY_TMPDIR": str(folder / "ray"),
    }


def test_an_embedded_ray_listens_on_loopback_only_with_token_auth(short_tmp: Path) -> None:
    tmp_path = short_tmp
    env = _private_env(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else ""
        facts = json.loads(line)
        listening = _listening(_socket_inodes(descendants(facts["pid"])))
        child.stdin.write("done\n")
        child.stdin.flush()
    finally:
        child.wait(timeout=120)
    assert facts["how"] == "embedded"
    assert facts["nodes"] == ["127.0.0.1"]
    assert facts["gcs"].startswith("127.0.0.1:")
    assert facts["auth"] == "token" and facts["usage_stats"] == "0"
    assert listening and listening <= LOOPBACK_HEX, listening
    assert not (tmp_path / "home" / ".ray").exists()  # the ephemeral token is never written


# One job's trial worker, then another job (driver) whose zero-CPU tasks run at once in
# several workers and leave them idle, then the first job's next trial.
CHILD_TWO_JOBS = textwrap.dedent(
    """
    import json, os, subprocess, sys
    from speedster_dist.runtime.ray import KEEP_IDLE_WORKERS, connect

    how = connect("auto")
    import ray

    @ray.remote(num_cpus=os.cpu_count())
    def trial():
        return os.getpid()

    other = '''
    import os, sys, time, ray
    ray.init(address=sys.argv[1], log_to_driver=False)
    @ray.remote(num_cpus=0)
    def probe():
        time.sleep(0.5)  # so that the probes run at once, each in a worker of its own
        return os.getpid()
    workers = len(set(ray.get([probe.remote() for _ in range(int(sys.argv[2]))])))
    time.sleep(2.5)  # past Ray's idle-worker threshold (1 s)
    print(workers)
    '''
    first = ray.get(trial.remote())
    idle = min((os.cpu_count() or 1) + 1, KEEP_IDLE_WORKERS - 2)
    address = ray.get_runtime_context().gcs_address
    done = subprocess.run(
        [sys.executable, "-c", other, address, str(idle)], capture_output=True, text=True
    )
    facts = {
        "how": how,
        "other": done.stdout.strip() or done.stderr[-2000:],
        "idle": idle,
        "kept": ray.get(trial.remote()) == first,
    }
    print(json.dumps(facts), flush=True)
    ray.shutdown()
    """
)


def test_an_embedded_ray_keeps_a_jobs_trial_worker_while_another_job_runs(
    short_tmp: Path,
) -> None:
    """Ray's default soft limit (one idle worker per CPU, over all jobs) ended the first job's
    idle trial worker while the second job's workers sat idle: the next trial paid for a new
    worker (importing torch again in a real search). The embedded Ray keeps it."""
    env = _private_env(short_tmp)
    done = subprocess.run(
        [sys.executable, "-c", CHILD_TWO_JOBS],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["how"] == "embedded"
    assert facts["other"] == str(facts["idle"]), facts["other"]  # its probes' workers
    assert facts["kept"]
