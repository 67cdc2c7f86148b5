"""Writing a learner to disk atomically, and opening one entry's files with its backend."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from speedster_dist.artifacts._entries import LearnerIO, WinnerEntry
from speedster_dist.artifacts._files import atomic_write_text
from speedster_dist.artifacts._manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PORTABLE_FOLDER,
    entry_json,
    saved_json,
)
from speedster_dist.backends import Compiled, get_backend
from speedster_dist.records import DeviceKind, SavedCandidate

__all__ = ["load_compiled", "save_learner"]


def save_learner(
    path: str | Path,
    io: LearnerIO,
    entries: Mapping[str, WinnerEntry],
    portable: SavedCandidate | None,
) -> Path:
    """Write the manifest and every winner's files under ``path`` (created if needed).

    Saving over a saved learner (the nightly run adding a hardware type) is atomic: new
    files go to folders the current manifest does not use, the manifest is replaced in
    one rename, and only then are the folders it no longer names removed. An interrupted
    save leaves the previous learner loadable (and, at worst, an unused folder behind).
    Other files in ``path`` are left alone.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    previous = _folders_in_use(root)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "io": io.to_json(),
        "entries": {},
    }
    for key, entry in entries.items():
        folder = _free_folder(root, _folder(key))
        checksums = _write_files(root / folder, entry.saved)
        manifest["entries"][key] = entry_json(entry, folder, checksums)
    if portable is not None:
        folder = _free_folder(root, PORTABLE_FOLDER)
        checksums = _write_files(root / folder, portable)
        manifest["portable"] = saved_json(portable, folder, checksums)
    atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    kept = {raw["folder"] for raw in manifest["entries"].values()}
    kept |= {manifest["portable"]["folder"]} if "portable" in manifest else set()
    for folder in previous - kept:
        shutil.rmtree(root / folder, ignore_errors=True)
    return root


def _folders_in_use(root: Path) -> set[str]:
    """The folders the manifest in ``root`` names (none when there is no readable one)."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        raws = [*manifest.get("entries", {}).values(), manifest.get("portable") or {}]
        names = {str(raw["folder"]) for raw in raws if isinstance(raw, dict) and "folder" in raw}
    except (OSError, ValueError, AttributeError, TypeError):
        return set()
    # Only plain sub-folders: a hand-edited manifest must not make save delete elsewhere.
    return {n for n in names if n and "/" not in n and "\\" not in n and n not in (".", "..")}


def _free_folder(root: Path, name: str) -> str:
    """``name``, or a fresh variant of it when that folder exists already (in use)."""
    while (root / name).exists():
        name = f"{name.split('~')[0]}~{uuid.uuid4().hex[:8]}"
    return name


def _write_files(folder: Path, saved: SavedCandidate) -> dict[str, str]:
    shutil.rmtree(folder, ignore_errors=True)
    checksums = {}
    for name, data in saved.files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        checksums[name] = hashlib.sha256(data).hexdigest()
    return checksums


def _folder(key: str) -> str:
    folder = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
    return folder if folder != PORTABLE_FOLDER else f"{folder}_"


def load_compiled(entry: WinnerEntry) -> Compiled:
    """The entry's model, loaded by its backend from a copy of its (verified) files."""
    folder = Path(tempfile.mkdtemp(prefix="speedster-learner-"))
    for name, data in entry.saved.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return get_backend(entry.backend).load(
        folder, entry.saved.options, DeviceKind(entry.saved.device)
    )
