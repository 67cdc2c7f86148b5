"""A trial that runs out of memory is isolated like a crash: its worker process ends, the
trial is recorded as failed with the reason, and the search goes on.

The candidate (``fake_oom``) caps its own process's address space a little above what it
uses and allocates past the cap, so the machine's memory is never at stake. The search runs
in a child process on its own private embedded Ray (the backend is registered before that
Ray starts, so its workers know it).
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

from speedster_dist.testing.fakes import FAKE_BACKENDS
from speedster_dist.testing.registry import backends_environment

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc"),
]
ROOT = Path(__file__).resolve().parents[2]

SEARCH = textwrap.dedent(
    """
    import json, os, re, time
    import torch
    from speedster_dist import optimize_model
    from speedster_dist.measure import MeasureSettings
    from speedster_dist.testing import models

    learner = optimize_model(
        models.tiny_mlp(),
        [(torch.randn(2, 16),) for _ in range(3)],
        ignore_compilers=["torchscript", "torch_compile", "onnxruntime", "openvino",
                          "tensorrt", "fake_faulty", "fake_deadly"],
        measure_settings=MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=5,
                                         min_duration_s=0.05),
        verbose=False,
    )
    rows = {f"{r.candidate.backend}:{r.candidate.precision.value}:{r.candidate.technique}":
            [r.status.value, r.reason] for r in learner.results}
    oom_reason = rows.get("fake_oom:fp32:oom", ["", ""])[1]
    found = re.search(r"worker process (\\d+) was ended", oom_reason)
    alive = None
    if found:
        stat = f"/proc/{found.group(1)}/stat"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                alive = open(stat).read().rsplit(")", 1)[1].split()[0] != "Z"
            except OSError:
                alive = False
            if not alive:
                break
            time.sleep(0.2)
    print(json.dumps({"rows": rows, "worker_alive": alive}), flush=True)
    """
)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # Ray's socket paths live under RAY_TMPDIR and may not exceed 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_trial_out_of_memory_ends_its_worker_and_the_search_goes_on(short_tmp: Path) -> None:
    (short_tmp / "home").mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(short_tmp / "home"),
        "RAY_TMPDIR": str(short_tmp / "ray"),
        **backends_environment(f"{FAKE_BACKENDS},fake_oom=speedster_dist.testing.fakes:OOM"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", SEARCH],
        env=env,
        cwd=short_tmp,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    status, reason = facts["rows"]["fake_oom:fp32:oom"]
    assert status == "failed"
    assert reason.startswith("out of memory: MemoryError"), reason
    assert "was ended" in reason and facts["worker_alive"] is False
    completed = [k for k, (s, _) in facts["rows"].items() if s == "complete"]
    assert "torch:fp32:" in completed and any(k.startswith("fake:") for k in completed), facts
