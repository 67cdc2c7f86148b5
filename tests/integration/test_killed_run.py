"""A run killed with SIGKILL leaves no process of its embedded Ray behind.

Ray's control store and raylet end with the driver, but its dashboard and runtime-env agents
used to run on for ever; the watcher started with the embedded Ray ends them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc"),
]
ROOT = Path(__file__).resolve().parents[2]

RUN = textwrap.dedent(
    """
    import os, sys, time
    from speedster_dist.runtime.ray import connect

    print(connect("auto"), os.getpid(), flush=True)
    if sys.argv[1] == "shutdown":
        import ray

        ray.shutdown()
        print("down", flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # Ray's socket paths live under RAY_TMPDIR and may not exceed 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _using(folder: Path) -> dict[int, str]:
    """Every process that names ``folder`` or holds a file open in it: pid -> its name."""
    prefix = str(folder)
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            files = []
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    files.append(os.readlink(fd))
            if prefix in args or any(f.startswith(prefix) for f in files):
                found[int(entry.name)] = args.split(" ")[0]
    return found


def _run(folder: Path, then: str) -> subprocess.Popen[str]:
    (folder / "home").mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(folder / "home"),
        "RAY_TMPDIR": str(folder / "ray"),
    }
    return subprocess.Popen(
        [sys.executable, "-c", RUN, then], stdout=subprocess.PIPE, text=True, env=env
    )


def _wait_until_only(folder: Path, spare: set[int]) -> dict[int, str]:
    """Until no process but ``spare`` uses ``folder`` (60 s at most): those left, killed."""
    deadline = time.monotonic() + 60
    while set(_using(folder)) - spare and time.monotonic() < deadline:
        time.sleep(0.5)
    left = {pid: name for pid, name in _using(folder).items() if pid not in spare}
    for pid in left:  # never leave them running, even when the test fails
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def test_a_run_killed_with_sigkill_leaves_no_ray_process(short_tmp: Path) -> None:
    run = _run(short_tmp, "sleep")
    try:
        assert run.stdout is not None
        how, pid = run.stdout.readline().split()
        assert how == "embedded" and int(pid) == run.pid
        deadline = time.monotonic() + 60  # the agents start a moment after ray.init returns
        while not {"ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= set(
            _using(short_tmp).values()
        ):
            assert time.monotonic() < deadline, _using(short_tmp)
            time.sleep(0.5)
    finally:
        run.send_signal(signal.SIGKILL)  # the run only, as `kill -9 PID` does
        run.wait(timeout=30)
    assert _wait_until_only(short_tmp, set()) == {}


def test_the_watcher_ends_with_a_ray_shut_down_by_a_process_that_lives_on(
    short_tmp: Path,
) -> None:
    run = _run(short_tmp, "shutdown")
    try:
        assert run.stdout is not None
        assert run.stdout.readline().split() == ["embedded", str(run.pid)]
        assert run.stdout.readline().strip() == "down"
        assert _wait_until_only(short_tmp, {run.pid}) == {}  # the watcher too
        assert run.poll() is None  # and the driver was left alone
    finally:
        run.kill()
        run.wait(timeout=30)
