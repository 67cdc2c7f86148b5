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

from speedster_dist.artifacts._card import CARD_FILE, card_record, render_card
from speedster_dist.artifacts._encoder import ENCODER_FOLDER, SentenceEncoding, encoding_json
from speedster_dist.artifacts._entries import PORTABLE_KEY, LearnerIO, WinnerEntry
from speedster_dist.artifacts._files import (
    UnsafeName,
    atomic_write_bytes,
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
from speedster_dist.backends import Compiled, get_backend, saves_code
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
    *,
    about: Mapping[str, Any] | None = None,
    encoder: SentenceEncoding | None = None,
    data_only: Mapping[str, WinnerEntry] | None = None,
) -> Path:
    """Write the manifest, every winner's files and the model card under ``path``.

    Saving over a saved learner (the nightly run adding a hardware type) is atomic: new
    files go to folders the current manifest does not use, the manifest is replaced in
    one rename, and only then are the folders it no longer names removed. An interrupted
    save leaves the previous learner loadable and removes what it wrote (a killed process
    can leave an unused folder behind).
    Other files in ``path`` are left alone. ``signing_key`` (default: the
    ``SPEEDSTER_DIST_SIGNING_KEY`` variable, if set) signs the manifest. ``kit_sha256``
    (the rebench kit's ``kit.json``, whose digests cover every kit file) is recorded in the
    manifest, so that its signature covers the kit too. ``about`` (the model's name, the
    metric and its threshold, the batch: JSON scalars) is recorded for people and the card;
    ``encoder`` (a sentence-transformer's pooling and tokenizer) for the learner's
    ``encode``. ``data_only``: per hardware type whose winner is a program, its fastest
    data-only candidate (``manifest["data_only"]``, loaded when ``trust_code`` is not
    given). The model card, ``README.md``, is rendered from the manifest and listed in
    it with its checksum (:mod:`._card`); it replaces a README already there.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    previous = _folders_in_use(root)
    created: list[str] = []
    card_before = _current_card(root)
    card_written = False
    try:
        manifest = _write_all(root, io, entries, portable, created, encoder)
        _write_data_only(root, manifest, data_only or {}, entries, created)
        if about:
            manifest["about"] = dict(about)
        if kit_sha256 is not None:
            manifest[KIT_SHA256] = kit_sha256
        secret = signing_key if signing_key is not None else signing_key_from_env()
        card = render_card(manifest, _programs(entries, portable), signed=secret is not None)
        atomic_write_text(root / CARD_FILE, card)
        card_written = True
        manifest["card"] = card_record(card)
        if secret is not None:
            manifest[SIGNATURE_FIELD] = sign_manifest(manifest, secret)
        atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    except BaseException as exc:  # the previous learner stays as it was: drop what we wrote
        for folder in created:
            shutil.rmtree(root / folder, ignore_errors=True)
        if card_written:  # the previous manifest lists the previous card
            _restore_card(root, card_before)
        if isinstance(exc, SignatureError):
            raise ValueError(str(exc)) from exc
        raise
    kept = {raw["folder"] for raw in manifest["entries"].values()}
    kept |= {raw["folder"] for raw in manifest.get("data_only", {}).values()}
    kept |= {manifest[part]["folder"] for part in ("portable", "encoder") if part in manifest}
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
    encoder: SentenceEncoding | None = None,
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
            entry, folder, _write_files(root / folder, entry.saved.files)
        )
    if portable is not None:
        folder = _new_folder(root, PORTABLE_FOLDER)
        created.append(folder)
        checksums = _write_files(root / folder, portable.files)
        manifest["portable"] = saved_json(portable, folder, checksums)
    if encoder is not None:
        folder = _new_folder(root, ENCODER_FOLDER)
        created.append(folder)
        checksums = _write_files(root / folder, encoder.files)
        manifest["encoder"] = encoding_json(encoder, folder, checksums)
    return manifest


def _write_data_only(
    root: Path,
    manifest: dict[str, Any],
    data_only: Mapping[str, WinnerEntry],
    entries: Mapping[str, WinnerEntry],
    created: list[str],
) -> None:
    """Each program winner's data-only stand-in, in a folder of its own: only beside a
    winner of the same type that is a program (any other would never be loaded)."""
    kept = {
        key: entry
        for key, entry in data_only.items()
        if key in entries and needs_trust(entries[key].backend) and not needs_trust(entry.backend)
    }
    if not kept:
        return
    manifest["data_only"] = {}
    for key, entry in kept.items():
        folder = _new_folder(root, _folder(key) + DATA_ONLY_FOLDER_SUFFIX)
        created.append(folder)
        checksums = _write_files(root / folder, entry.saved.files)
        manifest["data_only"][key] = entry_json(entry, folder, checksums)


def _programs(entries: Mapping[str, WinnerEntry], portable: SavedCandidate | None) -> list[str]:
    """The entries saved as programs (they load only with ``trust_code=True``)."""
    keys = [key for key, entry in entries.items() if needs_trust(entry.backend)]
    return keys + ([PORTABLE_KEY] if portable and needs_trust(portable.backend) else [])


def _current_card(root: Path) -> bytes | None:
    """The README already in ``root`` (a previous save's card, or the user's own), to put
    back if this save fails; None when there is none (or it is not a regular file)."""
    try:
        return read_plain_file(root, CARD_FILE)
    except (OSError, UnsafeName):
        return None


def _restore_card(root: Path, before: bytes | None) -> None:
    if before is None:
        (root / CARD_FILE).unlink(missing_ok=True)
    else:
        atomic_write_bytes(root / CARD_FILE, before)


def _folders_in_use(root: Path) -> set[str]:
    """The folders the manifest in ``root`` names (none when there is no readable one)."""
    try:  # never blocks on a FIFO, never dies on deep nesting or a huge number
        manifest = parse_json(read_plain_file(root, MANIFEST), str(root / MANIFEST))
        raws = [
            *manifest.get("entries", {}).values(),
            *manifest.get("data_only", {}).values(),
            manifest.get("portable") or {},
            manifest.get("encoder") or {},
        ]
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


def _write_files(folder: Path, files: Mapping[str, bytes]) -> dict[str, str]:
    """Write ``files`` into the new, empty ``folder``; their checksums."""
    checksums = {}
    for name, data in files.items():
        target = folder / check_plain_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as handle:  # never through something already there
            handle.write(data)
        checksums[name] = sha256_bytes(data)
    return checksums


DATA_ONLY_FOLDER_SUFFIX = "-data"


def _folder(key: str) -> str:
    folder = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key).lstrip(".")
    return folder if folder and folder != PORTABLE_FOLDER else f"{folder}_"


def needs_trust(backend_name: str) -> bool:
    """Whether what ``backend_name`` saves is a program (TorchScript, torch.export...)
    rather than data: loading it runs code from the artifact."""
    return saves_code(backend_name)


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
