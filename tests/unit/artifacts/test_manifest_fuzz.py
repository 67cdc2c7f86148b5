"""Property: whatever a manifest is mutated into, loading raises ArtifactError or works, never
another exception, and writes nothing outside the artifact (and its swept private copy)."""

from __future__ import annotations

import gc
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speedster_dist import load_model
from speedster_dist.artifacts import ArtifactError
from speedster_dist.cache import CACHE_ENV

from .test_hostile import artifact, mlp  # noqa: F401

_NAMES = st.sampled_from(
    ["../x", "/etc/passwd", "a/../../b", "model.onnx", "", "L/../../x", "~", "a\\b", "x" * 600]
)
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _NAMES
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _mutate(manifest: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> Any:
    if not path:
        return value
    parent = manifest
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete" and isinstance(parent, dict):
        del parent[last]
    elif action == "rename" and isinstance(parent, dict):
        parent[str(value)[:40]] = parent.pop(last)
    else:
        parent[last] = value
    return manifest


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@settings(
    max_examples=int(os.environ.get("SPEEDSTER_DIST_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    choice=st.data(),
    action=st.sampled_from(["replace", "delete", "rename"]),
    value=_VALUES,
)
def test_any_mutated_manifest_is_an_artifact_error_or_loads(
    artifact: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    choice: st.DataObject,
    action: str,
    value: Any,
):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    original = json.loads((artifact / "manifest.json").read_text())
    case = tmp_path / "case"
    shutil.rmtree(case, ignore_errors=True)
    shutil.copytree(artifact, case / "artifact")
    path = choice.draw(st.sampled_from(_paths(original)))
    mutated = _mutate(json.loads(json.dumps(original)), path, action, value)
    (case / "artifact" / "manifest.json").write_text(json.dumps(mutated, allow_nan=True))
    before = _tree(case)
    try:
        learner = load_model(case / "artifact", trust_code=True)
        del learner
    except ArtifactError:
        pass
    scratch = tmp_path / "cache" / "scratch"
    if scratch.exists() and list(scratch.iterdir()):
        # The private copy goes with the learner's last reference; a full collection (0.5 s
        # in a process that ran half the suite) only when a cycle still holds one.
        gc.collect()
    assert _tree(case) == before  # nothing written next to (or inside) the artifact
    assert not scratch.exists() or not list(scratch.iterdir())  # the private copy is gone
