"""The house style is enforced by the suite itself: ruff and mypy must be clean."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name):
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed: install the project with its [test] extra")
    return path


def test_ruff_is_clean():
    proc = subprocess.run(
        [_tool("ruff"), "check", "speedster_dist", "tests", "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-5000:]


def test_mypy_is_clean():
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "speedster_dist"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-5000:]
