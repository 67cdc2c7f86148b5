"""Writing a learner to disk atomically, and opening one entry's files with its backend."""

from __future__ import annotations

import json
import os
import shutil
import uuid
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from speedster_dist.artifacts._entries import LearnerIO, WinnerEntry
from speedster_dist.artifacts._files import (
    UnsafeName,
    atomic_write_text,
    check_plain_name,
    read_plain_file,
    sha256_bytes,
)
from speedster_dist.artifacts._manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PORTABLE_FOLDER,
    entry_json,
    saved_json,
)
from speedster_dist.artifacts._schema import KIT_SHA256, parse_json
from speedster_dist.artifacts._signing import (
    SIGNATURE_FIELD,
    sign_manifest,
    signing_key_from_env,
)
from speedster_dist.backends import Compiled, get_backend
from speedster_dist.cache import scratch_dir
from speedster_dist.errors import ArtifactError, SignatureError
from speedster_dist.records import DeviceKind, SavedCandidate

__all__ = ["load_compiled", "needs_trust", "save_learner"]


def save_learner(
    path: str | Path,
    io: LearnerIO,
    entries: Mapping[str, WinnerEntry],
    portable: SavedCandidate | None,
    signing_key: Any = None,
    kit_sha256: str | None = None,
) -> Path:
    """Write the manifest and every winner's files under ``path`` (created if needed).

    Saving over a saved learner (the nightly run adding a hardware type) is atomic: new
    files go to folders the current manifest does not use, the manifest is replaced in
    one rename, and only then are the folders it no longer names removed. An interrupted
    save leaves the previous learner loadable and removes what it wrote (a killed process
    can leave an unused folder behind).
    Other files in ``path`` are left alone. ``signing_key`` (default: the
    ``SPEEDSTER_DIST_SIGNING_KEY`` variable, if set) signs the manifest. ``kit_sha256``
    (the rebench kit's ``kit.json``, whose digests cover every kit file) is recorded in the
    manifest, so that its signature covers the kit too.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    previous = _folders_in_use(root)
    created: list[str] = []
    try:
        manifest = _write_all(root, io, entries, portable, created)
        if kit_sha256 is not None:
            manifest[KIT_SHA256] = kit_sha256
        secret = signing_key if signing_key is not None else signing_key_from_env()
        if secret is not None:
            manifest[SIGNATURE_FIELD] = sign_manifest(manifest, secret)
        atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    except BaseException as exc:  # the previous learner stays as it was: drop what we wrote
        for folder in created:
            shutil.rmtree(root / folder, ignore_errors=True)
        if isinstance(exc, SignatureError):
            raise ValueError(str(exc)) from exc
        raise
    kept = {raw["folder"] for raw in manifest["entries"].values()}
    kept |= {manifest["portable"]["folder"]} if "portable" in manifest else set()
    for folder in previous - kept:
        target = root / folder
        if target.is_dir() and not target.is_symlink():  # never follow a planted link
            shutil.rmtree(target, ignore_errors=True)
    return root


def _write_all(
    root: Path,
    io: LearnerIO,
    entries: Mapping[str, WinnerEntry],
    portable: SavedCandidate | None,
    created: list[str],
) -> dict[str, Any]:
    """Every entry's files in new folders (recorded in ``created``); the manifest for them."""
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "io": io.to_json(),
        "entries": {},
    }
    for key, entry in entries.items():
        folder = _new_folder(root, _folder(key))
        created.append(folder)
        manifest["entries"][key] = entry_json(
            entry, folder, _write_files(root / folder, entry.saved)
        )
    if portable is not None:
        folder = _new_folder(root, PORTABLE_FOLDER)
        created.append(folder)
        manifest["portable"] = saved_json(portable, folder, _write_files(root / folder, portable))
    return manifest


def _folders_in_use(root: Path) -> set[str]:
    """The folders the manifest in ``root`` names (none when there is no readable one)."""
    try:  # never blocks on a FIFO, never dies on deep nesting or a huge number
        manifest = parse_json(read_plain_file(root, MANIFEST), str(root / MANIFEST))
        raws = [*manifest.get("entries", {}).values(), manifest.get("portable") or {}]
        names = {str(raw["folder"]) for raw in raws if isinstance(raw, dict) and "folder" in raw}
    except (OSError, ValueError, ArtifactError, AttributeError, TypeError):
        return set()
    # Only plain sub-folders: a hand-edited manifest must not make save delete elsewhere.
    return {n for n in names if n and "/" not in n and "\\" not in n and n not in (".", "..")}


def _new_folder(root: Path, name: str) -> str:
    """A folder created now under ``root``: ``name``, or a fresh variant of it when that
    name is taken (by a folder in use, or by anything else, a dangling link included)."""
    while True:
        try:
            (root / name).mkdir()
            return name
        except FileExistsError:
            name = f"{name.split('~')[0]}~{uuid.uuid4().hex[:8]}"


def _write_files(folder: Path, saved: SavedCandidate) -> dict[str, str]:
    """Write ``saved``'s files into the new, empty ``folder``; their checksums."""
    checksums = {}
    for name, data in saved.files.items():
        target = folder / check_plain_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as handle:  # never through something already there
            handle.write(data)
        checksums[name] = sha256_bytes(data)
    return checksums


def _folder(key: str) -> str:
    folder = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key).lstrip(".")
    return folder if folder and folder != PORTABLE_FOLDER else f"{folder}_"


def needs_trust(backend_name: str) -> bool:
    """Whether what ``backend_name`` saves is a program (TorchScript, torch.export...)
    rather than data: loading it runs code from the artifact."""
    return bool(getattr(get_backend(backend_name), "saves_code", True))


def _check_file_options(backend: Any, saved: SavedCandidate, key: str) -> None:
    for option in getattr(backend, "file_options", ()):
        value = saved.options.get(option)
        if not isinstance(value, str) or value not in saved.files:
            raise ArtifactError(
                f"entry {key!r}: its load option {option}={value!r} is not one of its "
                f"listed files {sorted(saved.files)}"
            )


def load_compiled(key: str, entry: WinnerEntry, trust_code: bool) -> Compiled:
    """Entry ``key``'s model, loaded by its backend from a private copy of its files (read
    and verified now; the copy is removed when the loaded model is garbage collected)."""
    backend = get_backend(entry.backend)
    if needs_trust(entry.backend) and not trust_code:
        raise ArtifactError(
            f"entry {key!r} ({entry.label}) is saved as a program that runs code when loaded "
            "(TorchScript or a torch.export archive); load it only from a source you trust, "
            "with load_model(path, trust_code=True)"
        )
    _check_file_options(backend, entry.saved, key)
    folder = scratch_dir("learner-")  # 0700, unique, swept if a crash leaves it
    try:
        _materialize(folder, entry.saved, key)
        compiled = backend.load(folder, entry.saved.options, DeviceKind(entry.saved.device))
    except ArtifactError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    except Exception as exc:  # any failure of an untrusted file is an artifact error
        shutil.rmtree(folder, ignore_errors=True)
        raise ArtifactError(
            f"entry {key!r}: {entry.backend} could not load it: {type(exc).__name__}: {exc}"
        ) from exc
    weakref.finalize(compiled, shutil.rmtree, folder, True)
    return compiled


def _materialize(folder: Path, saved: SavedCandidate, key: str) -> None:
    try:
        for name in saved.files:
            data = saved.files[name]  # read and checked against its checksum now
            target = folder / check_plain_name(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
    except FileNotFoundError as exc:
        raise ArtifactError(f"entry {key!r}: model file {exc.filename or exc} is missing") from exc
    except UnsafeName as exc:
        raise ArtifactError(f"entry {key!r}: {exc}") from exc
