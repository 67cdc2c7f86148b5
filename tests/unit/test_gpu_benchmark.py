"""benchmarks/gpu.py --generate (GPT-2 decode with CUDA graphs against eager generate()) runs
where the GPU machine's image does: torch and transformers, no Ray, Optuna, pyarrow or
OpenVINO. Without a GPU its CPU side is checked: every side generates eager's tokens."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = textwrap.dedent(
    """
    import importlib.abc, runpy, sys

    class Gone(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"ray", "optuna", "pyarrow", "openvino"}:
                raise ImportError(f"No module named {name!r} (blocked by the test)")

    sys.meta_path.insert(0, Gone())
    sys.argv = ["gpu.py", *sys.argv[1:]]
    runpy.run_path(%r, run_name="__main__")
    """
)


def test_the_sides_and_their_agreement():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import _gpu_generate

    assert _gpu_generate.sides("cpu") == ["eager", "eager-static", "compiled"]
    assert _gpu_generate.sides("cuda")[-1] == "compiled-no-graphs"
    assert _gpu_generate.agreement([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75


@pytest.mark.slow
def test_generate_benchmark_runs_on_the_cpu_without_ray_or_optuna(tmp_path):
    script = BLOCKED % str(ROOT / "benchmarks" / "gpu.py")
    argv = ["--generate", "--device", "cpu", "--tiny", "--new-tokens", "4", "--reps", "1"]
    proc = subprocess.run(
        [sys.executable, "-c", script, *argv, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (written,) = tmp_path.glob("gpu-*.json")
    rows = json.loads(written.read_text())["generate"]["rows"]
    assert [row["side"] for row in rows] == ["eager", "eager-static", "compiled"]
    for row in rows:
        assert row["agreement"] == 1.0 and row["tokens_per_s"] > 0 and len(row["tokens"]) == 4
    assert rows[2]["compile_s"] > 0 and rows[0]["compile_s"] == 0
    assert "| compiled |" in proc.stdout
