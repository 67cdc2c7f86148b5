"""The contender server: one per calling process, contenders forked from it (not from the
caller), the caller's environment at the time of the request, a dead server replaced, and no
server or contender outliving its caller."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speedster_dist.records import Candidate
from speedster_dist.runtime import confirm_task
from speedster_dist.runtime._fresh_server import contender_server
from speedster_dist.runtime._fresh_worker import FreshWorker
from speedster_dist.testing.registry import EXTRA_BACKENDS_ENV

from .conftest import FAKE_HW

FP32 = Candidate.make("fake", "fp32", FAKE_HW.key, knobs={"slowdown": 1})
FP16 = Candidate.make("fake", "fp16", FAKE_HW.key, knobs={"slowdown": 1})


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # ended, its parent not yet told
            return True
        time.sleep(0.05)
    return False


def _kill_server():
    server = contender_server()
    server._proc.kill()
    server._proc.wait()
    return server


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_contenders_are_forked_from_one_server_not_from_this_process():
    server = contender_server()
    workers = [FreshWorker(), FreshWorker()]
    try:
        assert contender_server() is server  # one per process, reused
        server_pid = _parent_of(workers[0].pid)
        assert server_pid != os.getpid() and _parent_of(server_pid) == os.getpid()
        assert _parent_of(workers[1].pid) == server_pid and workers[0].pid != workers[1].pid
    finally:
        for worker in workers:
            worker.close()
    assert all(_gone(w.pid, 10) for w in workers)  # closed contenders end and are reaped


def test_a_contender_sees_the_environment_at_the_time_of_the_request(fakes, payload, monkeypatch):
    # The server may have started before the fakes were registered (an environment variable):
    # the contenders must still find them, as a new interpreter started now would.
    fake_backends = os.environ[EXTRA_BACKENDS_ENV]
    monkeypatch.delenv(EXTRA_BACKENDS_ENV)
    _kill_server()
    contender_server()  # a server started without the fakes
    monkeypatch.setenv(EXTRA_BACKENDS_ENV, fake_backends)
    got = confirm_task(payload, None, FAKE_HW, "n", ((FP32, True), (FP16, False)), 2)
    assert got.ok, got.reason
    assert [len(e.round_p50s) for e in got.entries] == [2, 2]


def test_a_dead_server_is_replaced(fakes, payload):
    dead = _kill_server()
    got = confirm_task(payload, None, FAKE_HW, "n", ((FP32, True), (FP16, False)), 1)
    assert got.ok, got.reason
    assert contender_server() is not dead and contender_server().alive()


def _maps_of(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_a_hugging_face_callers_contenders_start_with_transformers_imported(monkeypatch):
    """The server imports transformers' modeling code once a caller has it (its contenders
    then load Hugging Face models without importing it again), and not before."""
    import transformers.modeling_utils  # noqa: F401  # the caller holds a Hugging Face model

    _kill_server()
    with monkeypatch.context() as patch:  # a caller without it (an MLP's search)
        patch.delitem(sys.modules, "transformers.modeling_utils")
        server = contender_server()
        FreshWorker().close()
        # transformers' modeling code imports the compiled safetensors extension
        assert "safetensors" not in _maps_of(server._proc.pid)
    FreshWorker().close()
    assert contender_server() is server and "safetensors" in _maps_of(server._proc.pid)


_CALLER = """
import os, sys
from speedster_dist.runtime._fresh_worker import FreshWorker
worker = FreshWorker()
server = open(f"/proc/{worker.pid}/stat").read().rsplit(")", 1)[1].split()[1]
print(server, worker.pid, flush=True)
os._exit(0)  # no close: the caller just ends (a crashed driver, a killed Ray worker)
"""


def test_no_server_or_contender_outlives_its_caller():
    out = subprocess.run(
        [sys.executable, "-c", _CALLER], capture_output=True, text=True, timeout=120, check=True
    )
    server, contender = (int(p) for p in out.stdout.split())
    alive = [p for p in (server, contender) if not _gone(p, 15)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert alive == []
