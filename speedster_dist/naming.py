"""Names: the one a model is recorded under when the user gives none, and what a node group
may be called.

A Hugging Face folder names its model in ``config.json`` (``_name_or_path``: the hub id it
was saved from); files and other folders by their own name, unless that is a generic one
such as ``model`` (``…/minilm/model``, ``…/bert/model.onnx``): then by the folder above.
Nothing here imports more than the standard library.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["GENERIC_NAMES", "describe_model", "model_name", "name_from_path", "parse_group_names"]

# Names that say nothing about which model it is.
GENERIC_NAMES = frozenset(
    {"model", "models", "checkpoint", "weights", "export", "onnx", "saved_model", "final", "best"}
)
# A Ray label value: what a node group may be called.
_GROUP_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


def name_from_path(path: str | Path) -> str:
    """The file's stem (or the folder's name), or its parent's when that one is generic."""
    where = Path(path)
    name = where.stem if where.suffix else where.name
    parent = where.parent.name if where.parent != where else ""
    if name.lower() in GENERIC_NAMES and parent and parent.lower() not in GENERIC_NAMES:
        return parent
    return name or str(where)


def _configured_name(folder: Path) -> str:
    """``_name_or_path`` of ``folder/config.json``, when it names something other than a
    local folder (it holds the path a model was loaded from when it was saved)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    name = config.get("_name_or_path") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name.strip():
        return ""
    if os.path.isabs(name):
        return name_from_path(name)
    return name.strip()


def model_name(path: str | Path) -> str:
    """The default name of the model at ``path`` (see the module's docstring)."""
    where = Path(path)
    if where.is_dir() and (where / "config.json").is_file():
        configured = _configured_name(where)
        if configured and configured.lower() not in GENERIC_NAMES:
            return configured
    return name_from_path(where)


def describe_model(model: Any) -> str:
    """A readable default model name: the Hugging Face name, the file name or the class."""
    if isinstance(model, str | Path):
        where = Path(model)
        # A file keeps its name (model.onnx says what it is); a folder is named by its
        # config, or after its parent when it is a generic "model" folder.
        return where.name if where.suffix else model_name(where)
    config = getattr(model, "config", None)
    for name in (getattr(model, "name_or_path", ""), getattr(config, "_name_or_path", "")):
        if isinstance(name, str) and name:
            # from_pretrained(folder) sets the folder's path: its config.json names the model
            return model_name(name) if os.path.isabs(name) else name
    return type(model).__name__


def parse_group_names(value: str | Iterable[object]) -> tuple[str, ...]:
    """``node_groups`` as node group names, duplicates dropped (ValueError says what is
    wrong): ``optimize_model`` checks them before any trial, the cluster's demand uses them."""
    names = [value] if isinstance(value, str) else list(value)
    bad = [n for n in names if not isinstance(n, str) or not _GROUP_NAME.match(n)]
    if bad:
        raise ValueError(
            f"node group names must be Ray label values (letters, digits, '-', '_', '.'; "
            f"at most 63), got {bad!r}"
        )
    return tuple(dict.fromkeys(str(n) for n in names))
