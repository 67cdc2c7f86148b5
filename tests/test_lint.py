"""The house style is enforced by the suite itself: ruff (lint and format) and mypy are clean,
and no module of the package outgrows the size a reader can hold in mind."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["speedster_dist", "tests", "benchmarks", "scripts", "examples"]
MAX_MODULE_LINES = 450


def _tool(name):
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed: install the project with its [test] extra")
    return path


def test_ruff_is_clean():
    proc = subprocess.run(
        [_tool("ruff"), "check", *CHECKED], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-5000:]


def test_ruff_format_is_clean():
    proc = subprocess.run(
        [_tool("ruff"), "format", "--check", *CHECKED], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-5000:]


def test_mypy_is_clean():
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "speedster_dist", "tests", "scripts", "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-5000:]


def test_no_module_is_a_grab_bag():
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
        for path in (ROOT / "speedster_dist").rglob("*.py")
    }
    too_big = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not too_big, f"split these modules (at most {MAX_MODULE_LINES} lines): {too_big}"
