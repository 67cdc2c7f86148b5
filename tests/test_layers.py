"""The dependency rule of docs/architecture.md, checked on every import statement (lazy ones
inside functions included): roles depend one way, the load path stays free of the search, only
``runtime/ray/`` imports Ray."""

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
    "hub": set(),  # models by name: the Hugging Face cache, safetensors, no remote code
    "sentence": {"artifacts"},  # sentence-transformers: the part optimized, encode()
    "backends": set(),
    "measure": set(),
    "search": set(),
    "artifacts": {"backends"},
    "learner": {"artifacts", "backends", "sentence"},
    # What users see: tables, progress, summary, board (records in, text out).
    "present": set(),
    "results": {"present"},  # the history, and its HTML report (results/report/)
    "runtime": {"backends", "measure", "search"},
    "options": {"backends", "measure", "results", "search"},  # history: lazily
    "prepare": {"artifacts", "backends", "measure", "options", "runtime", "sentence"},
    "learner_builder": {"artifacts", "learner", "present"},
    # Generative models: the task, the prompts, the generation payload (docs/generation.md).
    "generation": {"artifacts", "backends", "measure", "options", "prepare", "runtime"},
    "api": {
        "generation",
        "hub",
        "learner",
        "learner_builder",
        "measure",
        "options",
        "prepare",
        "present",
        "results",
        "runtime",
        "sentence",
    },
    "fleet": {
        "api",
        "generation",
        "artifacts",
        "backends",
        "hub",
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
BELOW_RUNTIME = {
    "present",
    "results",
    "options",
    "learner_builder",
    "artifacts",
    "learner",
    "sentence",
    "hub",
}
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
    "sentence": {"ray", "optuna", "pyarrow"},
    "hub": {"torch", "ray", "optuna", "pyarrow"},
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


# -- Ray in one folder ----------------------------------------------------------------------
RAY_FOLDER = PACKAGE / "runtime" / "ray"
# Besides the folder itself: the runtime package's face (it re-exports the public Ray names
# where callers found them first) and the entry points that choose to run on Ray.
RAY_FOLDER_USERS = {"api", "cli", "fleet"}
RUNTIME_FACE = PACKAGE / "runtime" / "__init__.py"


def _names_imported(path: Path) -> set[str]:
    """Every dotted name an import statement of ``path`` names (``from a import b``: a, a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _in_ray_folder(path: Path) -> bool:
    return RAY_FOLDER in path.parents


def test_only_the_ray_folder_imports_ray() -> None:
    importers = {
        path.relative_to(PACKAGE).as_posix(): sorted(
            n for n in _names_imported(path) if n.split(".")[0] == "ray"
        )
        for path in MODULES
    }
    outside = {path: names for path, names in importers.items() if names}
    outside = {p: n for p, n in outside.items() if not p.startswith("runtime/ray/")}
    assert not outside, f"only speedster_dist/runtime/ray/ may import Ray: {outside}"
    inside = [p for p, names in importers.items() if names and p.startswith("runtime/ray/")]
    assert len(inside) >= 4, "the rule is vacuous: the Ray folder should be where Ray is used"


PRIVATE_RAY = ("ray._private", "ray._raylet", "ray._common", "ray.experimental")


def _private_ray_uses(path: Path) -> list[str]:
    """Imports of Ray's private or experimental modules, and dotted uses such as
    ``ray._private.x`` or ``ray.experimental.internal_kv`` written in code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = [n for n in _names_imported(path) if n.startswith(PRIVATE_RAY)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            dotted = f"{node.value.id}.{node.attr}"
            if dotted.startswith(PRIVATE_RAY):
                found.append(dotted)
    return sorted(set(found))


def test_no_module_uses_rays_private_or_experimental_apis() -> None:
    uses = {p.relative_to(PACKAGE).as_posix(): _private_ray_uses(p) for p in MODULES}
    assert {p: u for p, u in uses.items() if u} == {}


def test_the_cluster_and_benchmark_scripts_use_no_private_ray_apis() -> None:
    """What users run beside the package (cluster/local.sh's supervisor, the benchmarks)
    keeps to Ray's public means too (a private RAY_TMPDIR, not patched internals)."""
    scripts = sorted([*(ROOT / "cluster").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")])
    assert ROOT / "cluster" / "local_cluster.py" in scripts
    uses = {p.relative_to(ROOT).as_posix(): _private_ray_uses(p) for p in scripts}
    assert {p: u for p, u in uses.items() if u} == {}


def test_the_private_ray_check_finds_an_import_and_a_dotted_use(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n"
        "    from ray.experimental.internal_kv import _internal_kv_put\n"
        "    import ray\n"
        "    return ray._private.services\n"
    )
    assert _private_ray_uses(module) == [
        "ray._private",
        "ray.experimental.internal_kv",
        "ray.experimental.internal_kv._internal_kv_put",
    ]


def test_the_ray_folder_is_used_only_by_entry_points() -> None:
    wrong = {}
    for path in MODULES:
        if _in_ray_folder(path) or path == RUNTIME_FACE or _part(path) in RAY_FOLDER_USERS:
            continue
        uses = {
            n
            for n in _names_imported(path)
            if n == "speedster_dist.runtime.ray" or n.startswith("speedster_dist.runtime.ray.")
        }
        if uses:
            wrong[path.relative_to(PACKAGE).as_posix()] = sorted(uses)
    assert not wrong, (
        "the rest of runtime/ is executor-agnostic, and only api, cli and fleet choose Ray: "
        f"{wrong}"
    )


# -- no import circle -----------------------------------------------------------------------


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


MODULE_NAMES = {_module_name(path): path for path in MODULES}


def _targets(path: Path) -> set[str]:
    """The package's modules that ``path`` names in an import statement (lazy ones and those
    for type checking only included): ``from a import b`` names a.b when b is a module, else
    a. The parent packages Python imports on the way are not counted: a package's face that
    re-exports its own modules is no circle."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up ``level - 1`` packages
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULE_NAMES else base)
    return {t for t in found if t in MODULE_NAMES and t != name}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = [stack.pop()]
            while group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def test_no_import_circle_in_the_package() -> None:
    graph = {name: _targets(path) for name, path in MODULE_NAMES.items()}
    circles = _circles(graph)
    ties = [
        [f"{a} -> {b}" for a in circle for b in sorted(graph[a]) if b in circle]
        for circle in circles
    ]
    assert not circles, f"modules that import each other (lazily or not): {ties}"


def test_the_circle_check_finds_a_lazy_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _circles(graph) == [["a", "b", "c"]]
    learner = PACKAGE / "learner.py"
    assert "speedster_dist.artifacts" in _targets(learner)  # from ... import names the face
