"""``manifest.json``: the on-disk description of a saved learner, and its verified reading.

A saved learner is data, not code: ``manifest.json`` plus standard model files (ONNX,
OpenVINO IR, TorchScript, TensorRT engines), each with its SHA-256. Reading checks the
format, every name and every checksum, and never unpickles or ``exec``s anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speedster_dist.artifacts._entries import PORTABLE_KEY, LearnerIO, WinnerEntry
from speedster_dist.backends import backend_names
from speedster_dist.hardware import hardware_from_json, hardware_to_json
from speedster_dist.records import SavedCandidate

if TYPE_CHECKING:
    from speedster_dist.learner import HardwareKeyedLearner

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "PORTABLE_FOLDER",
    "ArtifactError",
    "LearnerMetadata",
    "entry_json",
    "saved_json",
]

FORMAT = "speedster-dist-learner"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PORTABLE_FOLDER = "_portable"  # the portable fallback's folder in an artifact


class ArtifactError(RuntimeError):
    """A saved learner is missing, corrupt, tampered with, or has nothing for this machine."""


def saved_json(saved: SavedCandidate, folder: str, checksums: dict[str, str]) -> dict[str, Any]:
    """The manifest record of one candidate's files."""
    return {
        "folder": folder,
        "backend": saved.backend,
        "device": saved.device,
        "options": saved.options,
        "files": checksums,
    }


def entry_json(entry: WinnerEntry, folder: str, checksums: dict[str, str]) -> dict[str, Any]:
    """The manifest record of a winner: its files, what it is and what it measured."""
    return {
        **saved_json(entry.saved, folder, checksums),
        "precision": entry.precision,
        "technique": entry.technique,
        "knobs": entry.knobs,
        "metrics": entry.metrics,
        "hardware": hardware_to_json(entry.hardware),
    }


def _validate(manifest: Any, where: Path) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{where} is not a speedster-dist learner manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{where} has format version {manifest.get('version')}, "
            f"this speedster-dist reads version {FORMAT_VERSION}"
        )
    entries = manifest.get("entries")
    if not isinstance(entries, dict) or not entries:
        raise ArtifactError(f"{where} holds no winner")
    parts = [(f"entry {key!r}", raw) for key, raw in entries.items()]
    if "portable" in manifest:
        parts.append(("the portable fallback", manifest["portable"]))
    for name, raw in parts:
        if not isinstance(raw, dict) or raw.get("backend") not in backend_names():
            backend = raw.get("backend") if isinstance(raw, dict) else None
            raise ArtifactError(f"{where}: {name} names unknown backend {backend!r}")
        if not isinstance(raw.get("files"), dict) or not raw["files"]:
            raise ArtifactError(f"{where}: {name} lists no model file")


def read_saved(root: Path, key: str, raw: Mapping[str, Any]) -> SavedCandidate:
    """An entry's files, each verified against its checksum and kept inside the artifact."""
    folder = (root / str(raw["folder"])).resolve()
    if root.resolve() not in folder.parents:
        raise ArtifactError(f"entry {key!r} points outside the artifact folder")
    files = {}
    for name, digest in raw["files"].items():
        target = (folder / name).resolve()
        if folder not in target.parents or not target.is_file():
            raise ArtifactError(f"entry {key!r}: model file {name!r} is missing")
        data = target.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise ArtifactError(
                f"entry {key!r}: {name!r} does not match its checksum "
                "(the file was changed or corrupted after saving)"
            )
        files[name] = data
    return SavedCandidate(raw["backend"], raw["device"], dict(raw["options"]), files)


def _read_entry(root: Path, key: str, raw: Mapping[str, Any]) -> WinnerEntry:
    saved = read_saved(root, key, raw)
    hardware = hardware_from_json(raw["hardware"])
    return WinnerEntry(
        hardware,
        raw["backend"],
        raw["precision"],
        raw.get("technique", ""),
        dict(raw.get("knobs", {})),
        dict(raw.get("metrics", {})),
        saved,
    )


def _describe(key: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    metrics = raw.get("metrics", {})
    p50, base = metrics.get("latency_p50_s"), metrics.get("baseline_p50_s")
    return {
        "hardware_type": key,
        "description": raw.get("hardware", {}).get("description", ""),
        "backend": raw["backend"],
        "precision": raw.get("precision", ""),
        "technique": raw.get("technique", ""),
        "device": raw["device"],
        "latency_p50_ms": p50 * 1e3 if p50 else None,
        "speedup": base / p50 if p50 and base else None,
        "metric_drop": metrics.get("metric_drop"),
    }


@dataclass(frozen=True)
class LearnerMetadata:
    """The parsed, verified manifest of a saved learner (Speedster's loading entry point)."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def read(cls, path: str | Path) -> LearnerMetadata:
        root = Path(path)
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise ArtifactError(f"{root} is not a saved learner: {MANIFEST} is missing")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{manifest_path} is corrupt: {exc}") from exc
        _validate(manifest, manifest_path)
        return cls(root, manifest)

    def hardware_types(self) -> list[str]:
        """The hardware types with a winner (see :attr:`has_portable` for the fallback)."""
        return list(self.manifest["entries"])

    @property
    def has_portable(self) -> bool:
        return "portable" in self.manifest

    def folders(self) -> set[str]:
        """The folders of the artifact this manifest uses (its entries and fallback)."""
        raws = [*self.manifest["entries"].values(), self.manifest.get("portable") or {}]
        return {str(raw["folder"]) for raw in raws if "folder" in raw}

    def describe(self) -> list[dict[str, Any]]:
        """One row per entry (then the portable fallback): what it is and what it measured."""
        rows = [_describe(key, raw) for key, raw in self.manifest["entries"].items()]
        if self.has_portable:
            raw = self.manifest["portable"]
            rows.append(
                {
                    **_describe(PORTABLE_KEY, {**raw, "precision": "fp32"}),
                    "description": "the original model, not optimized (fallback)",
                    "metric_drop": 0.0,
                }
            )
        return rows

    def entries(self, root: Path | None = None) -> dict[str, WinnerEntry]:
        """Every winner, its files read and verified."""
        base = root if root is not None else self.path
        return {key: _read_entry(base, key, raw) for key, raw in self.manifest["entries"].items()}

    def portable(self, root: Path | None = None) -> SavedCandidate | None:
        """The portable fallback's files, read and verified (None when there is none)."""
        if not self.has_portable:
            return None
        return read_saved(root or self.path, PORTABLE_KEY, self.manifest["portable"])

    def io(self) -> LearnerIO:
        return LearnerIO.from_json(self.manifest["io"])

    def load_model(
        self, path: str | Path | None = None, hardware_key: str | None = None
    ) -> HardwareKeyedLearner:
        """Load and verify every entry; the returned learner runs ``hardware_key``'s entry
        (``"portable"`` for the fallback) or, by default, picks this machine's (see
        :mod:`speedster_dist.artifacts._selection`), warning when it falls back."""
        from speedster_dist.learner import HardwareKeyedLearner

        root = Path(path) if path is not None else self.path
        learner = HardwareKeyedLearner(self.io(), self.entries(root), portable=self.portable(root))
        if hardware_key is not None:  # calling the learner runs the asked-for entry
            learner.selection = learner.select(hardware_key)
        learner.for_hardware()  # load now, so a broken artifact fails here
        return learner
