"""The dependency rule of docs/architecture.md, checked on every import statement (lazy ones
inside functions included): roles depend one way, and the load path stays free of the search."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "speedster_dist"

# Leaves anyone may import.
_LEAVES = {
    "records",
    "errors",
    "serving",
    "cache",
    "inputs",
    "hardware",
    "modelio",
    "naming",
    "cost",
}
# What each part of the package may import from speedster_dist (besides itself and leaves).
ALLOWED: dict[str, set[str]] = {
    "records": set(),
    "errors": set(),  # every public exception: imports nothing at all
    "serving": set(),  # load points, throughput records and the runner protocol: stdlib only
    "cache": set(),
    "cost": set(),  # prices and cost per inference, pure: summary, manifest and report use it
    "hardware": set(),
    "inputs": set(),
    "naming": set(),
    "modelio": {"backends"},  # SourceModel, the record every backend consumes
    "backends": set(),
    "measure": set(),
    "search": set(),
    # LearnerMetadata.load_model (Speedster's API) builds the learner: one lazy import back.
    "artifacts": {"backends", "learner"},
    "learner": {"artifacts", "backends"},
    # What users see: tables, progress, summary, board (records in, text out).
    "present": set(),
    "results": {"present"},  # the history, and its HTML report (results/report/)
    "runtime": {"backends", "measure", "search"},
    "options": {"backends", "measure", "results", "search"},  # history: lazily
    "prepare": {"artifacts", "backends", "measure", "options", "runtime"},
    "learner_builder": {"artifacts", "learner", "present"},
    "api": {
        "learner",
        "learner_builder",
        "measure",
        "options",
        "prepare",
        "present",
        "results",
        "runtime",
    },
    "fleet": {
        "api",
        "artifacts",
        "backends",
        "learner",
        "learner_builder",
        "measure",
        "options",
        "prepare",
        "present",
        "results",
        "runtime",
        "search",
    },
    "cli": {"artifacts", "fleet", "measure", "present", "results", "runtime"},
    "testing": {"backends", "measure", "runtime"},
    "__init__": {"api", "artifacts", "learner"},
    "__main__": {"cli"},
}
# Presentation, options and what the load path or the learner builder imports sit below the
# runtime: they read records (records.py) and raise errors (errors.py), never the runtime's.
BELOW_RUNTIME = {"present", "results", "options", "learner_builder", "artifacts", "learner"}
# Third-party libraries a part must never import: the load path pays for none of the search.
FORBIDDEN_LIBRARIES: dict[str, set[str]] = {
    "records": {"torch", "ray", "optuna", "pyarrow"},
    "errors": {"torch", "ray", "optuna", "pyarrow"},
    "serving": {"torch", "ray", "optuna", "pyarrow"},
    "naming": {"torch", "ray", "optuna", "pyarrow"},
    "cost": {"torch", "ray", "optuna", "pyarrow"},
    "hardware": {"ray", "optuna", "pyarrow"},
    "artifacts": {"ray", "optuna", "pyarrow"},
    "learner": {"ray", "optuna", "pyarrow"},
    "backends": {"ray", "optuna", "pyarrow"},
    "measure": {"ray", "optuna", "pyarrow"},
    "search": {"torch", "ray", "pyarrow"},
    "results": {"torch", "ray", "optuna"},
    "present": {"torch", "ray", "optuna", "pyarrow"},
}


def _part(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "speedster_dist":  # from speedster_dist import hardware
                names.update(f"speedster_dist.{alias.name}" for alias in node.names)
    return names


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_follow_the_dependency_rule(path: Path) -> None:
    part = _part(path)
    assert part in ALLOWED, f"{part} is a new part of the package: give it a rule here"
    allowed = ALLOWED[part] | _LEAVES | {part}
    wrong = set()
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "speedster_dist":
            target = name.split(".")[1] if "." in name else "__init__"
            if target not in allowed:
                wrong.add(name)
        elif top in FORBIDDEN_LIBRARIES.get(part, set()):
            wrong.add(name)
    assert not wrong, f"{part} must not import {sorted(wrong)} (docs/architecture.md)"


def test_presentation_and_options_never_import_the_runtime():
    """The rule on its own, on the modules themselves (lazy imports included)."""
    wrong = {
        path.relative_to(PACKAGE).as_posix(): sorted(
            name for name in _imports(path) if name.startswith("speedster_dist.runtime")
        )
        for path in MODULES
        if _part(path) in BELOW_RUNTIME
    }
    assert not {k: v for k, v in wrong.items() if v}
    assert all("runtime" not in ALLOWED[part] for part in BELOW_RUNTIME)
