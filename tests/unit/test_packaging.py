"""pyproject.toml: one version source, openvino in an extra that [cpu] brings, the GPU's NVML
in [gpu], and the lowest supported versions (scripts/test-lowest.sh) derived from its floors."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import speedster_dist

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lowest_pins", ROOT / "scripts/lowest_pins.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _lowest(*extras: str) -> dict[str, str]:
    pins: dict[str, str] = _pins_module().lowest_pins(ROOT / "pyproject.toml", extras)
    return pins


def test_the_version_is_written_once_in_the_package():
    assert "version" not in PROJECT["project"] and PROJECT["project"]["dynamic"] == ["version"]
    dynamic = PROJECT["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "speedster_dist.__version__"}
    assert speedster_dist.__version__.count(".") == 2


def test_openvino_is_an_extra_that_the_cpu_extra_and_the_readme_commands_bring():
    core = _lowest()
    assert "openvino" not in core and "onnxruntime" not in core
    for extra in ("cpu", "minilm", "test", "int8"):  # README command 1 is [minilm], 2 is [test]
        assert _lowest(extra)["openvino"] == "2024.4", extra
    assert _lowest("minilm")["onnxruntime"] == _lowest("test")["onnxruntime"] == "1.19"
    assert "openvino" not in _lowest("gpu")  # a GPU node needs no OpenVINO


def test_gpu_discovery_through_nvml_comes_with_the_gpu_extra():
    gpu = _lowest("gpu")
    assert "nvidia-ml-py" in gpu and "onnxruntime-gpu" in gpu and "onnxruntime" not in gpu


def test_the_lowest_versions_are_the_floors_the_code_needs():
    pins = _lowest("test")
    # Token authentication of the embedded Ray; Dim.DYNAMIC; the journal API of Optuna 4.
    assert pins["ray"] == "2.52" and pins["torch"] == "2.6" and pins["optuna"] == "4.0"
    assert pins["nncf"] == "2.13" and pins["ruff"] == "0.17.6"  # exact pins stay
    # constraints name distributions only: no extras, never the project itself
    assert all("[" not in name for name in pins) and "speedster-dist" not in pins


def test_each_core_dependency_is_listed_once():
    names = [
        re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower()
        for dep in PROJECT["project"]["dependencies"]
    ]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


def test_a_name_with_several_floors_takes_the_highest(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        """
[project]
name = "demo"
dependencies = ["rich>=13", "ray"]
[project.optional-dependencies]
a = ["rich>=13.5.2", "demo[b]"]
b = ["numpy~=1.26", "ray[client]"]
"""
    )
    pins = _pins_module().lowest_pins(tmp_path / "pyproject.toml", ["a"])
    assert pins == {"rich": "13.5.2", "numpy": "1.26"}


def test_the_reports_templates_ship_with_the_package():
    data = PROJECT["tool"]["setuptools"]["package-data"]["speedster_dist"]
    shipped = {
        path.relative_to(ROOT / "speedster_dist")
        for pattern in data
        for path in (ROOT / "speedster_dist").glob(pattern)
    }
    templates = set((ROOT / "speedster_dist/results/report/templates").glob("*"))
    assert templates and {t.relative_to(ROOT / "speedster_dist") for t in templates} <= shipped
    core = _lowest()
    assert core["jinja2"] == "3.1" and core["pydantic"] == "2.6"  # the report, the schemas
