"""The result users get: a learner called exactly like the original model.

:class:`HardwareKeyedLearner` holds one winner per hardware type and runs the one for the
machine it is on. Saved, it is data, not code: ``manifest.json`` plus standard model files
(ONNX, OpenVINO IR, TorchScript, TensorRT engines), each with its SHA-256. Loading checks
every checksum and never unpickles or ``exec``s anything read from the artifact.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from speedster_dist.backends import Compiled, backend_names, get_backend
from speedster_dist.modelio import OutputSpec
from speedster_dist.records import DeviceKind, HardwareType, TrialResult
from speedster_dist.runtime import SavedCandidate, local_hardware_types

__all__ = [
    "ArtifactError",
    "HardwareKeyedLearner",
    "InferenceLearner",
    "LearnerIO",
    "LearnerMetadata",
    "WinnerEntry",
    "load_model",
]

FORMAT = "speedster-dist-learner"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ArtifactError(RuntimeError):
    """A saved learner is missing, corrupt, tampered with, or has nothing for this machine."""


@dataclass(frozen=True)
class LearnerIO:
    """How the original model is called and what it returns."""

    input_names: tuple[str, ...]
    keyword: bool
    output: OutputSpec
    output_class: type | None = None  # the live ModelOutput class (not saved: re-resolved)

    def to_json(self) -> dict[str, Any]:
        return {
            "input_names": list(self.input_names),
            "keyword": self.keyword,
            "output": self.output.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LearnerIO:
        return cls(
            tuple(str(n) for n in data["input_names"]),
            bool(data["keyword"]),
            OutputSpec.from_json(data["output"]),
        )

    def flat_inputs(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[torch.Tensor, ...]:
        """Map a call of the original model's signature onto the flat input order."""
        values: dict[str, Any] = dict(zip(self.input_names, args, strict=False))
        if len(args) > len(self.input_names):
            raise TypeError(f"expected at most {len(self.input_names)} inputs, got {len(args)}")
        for name, value in kwargs.items():
            if name in self.input_names:
                values[name] = value
            elif isinstance(value, torch.Tensor):
                raise TypeError(
                    f"unexpected input {name!r}; this model takes {list(self.input_names)}"
                )
        missing = [n for n in self.input_names if n not in values]
        if missing:
            raise TypeError(f"missing inputs {missing}; this model takes {list(self.input_names)}")
        return tuple(values[n] for n in self.input_names)


@dataclass(frozen=True)
class WinnerEntry:
    """The winner of one hardware type: what it is, what it measured, its files."""

    hardware: HardwareType
    backend: str
    precision: str
    technique: str
    knobs: dict[str, Any]
    metrics: dict[str, Any]
    saved: SavedCandidate

    @property
    def label(self) -> str:
        tech = f"/{self.technique}" if self.technique else ""
        return f"{self.backend} {self.precision}{tech}"


class InferenceLearner:
    """One compiled model behind the original model's call signature and output type."""

    def __init__(self, compiled: Compiled, io: LearnerIO, entry: WinnerEntry) -> None:
        self.compiled = compiled
        self.io = io
        self.entry = entry

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        flat = self.io.flat_inputs(args, kwargs)
        outputs = self.compiled(*flat)
        return self.io.output.rebuild(outputs, self.io.output_class)

    def __repr__(self) -> str:
        return f"InferenceLearner({self.entry.label} for {self.entry.hardware.key})"


@dataclass
class HardwareKeyedLearner:
    """Winners keyed by hardware type; calling it runs the winner for this machine."""

    io: LearnerIO
    entries: dict[str, WinnerEntry]
    summary: str = ""
    results: list[TrialResult] = field(default_factory=list)  # every trial of the search
    _active: dict[str, InferenceLearner] = field(default_factory=dict, repr=False)

    def hardware_types(self) -> list[str]:
        return list(self.entries)

    def for_hardware(self, hardware_key: str | None = None) -> InferenceLearner:
        """The learner for ``hardware_key`` (default: this machine's type or closest match)."""
        key = hardware_key or choose_entry(self.entries, local_hardware_types())
        if key not in self.entries:
            raise ArtifactError(
                f"no winner for hardware type {key!r}; this learner has {self.hardware_types()}"
            )
        if key not in self._active:
            entry = self.entries[key]
            compiled = _load_entry(entry)
            self._active[key] = InferenceLearner(compiled, self.io, entry)
        return self._active[key]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.for_hardware()(*args, **kwargs)

    def save(self, path: str | Path) -> Path:
        """Write the manifest and every winner's files under ``path`` (created if needed)."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "io": self.io.to_json(),
            "entries": {},
        }
        for key, entry in self.entries.items():
            folder = root / _folder(key)
            shutil.rmtree(folder, ignore_errors=True)
            checksums = {}
            for name, data in entry.saved.files.items():
                target = folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                checksums[name] = hashlib.sha256(data).hexdigest()
            manifest["entries"][key] = _entry_json(entry, _folder(key), checksums)
        (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return root


def _folder(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)


def _entry_json(entry: WinnerEntry, folder: str, checksums: dict[str, str]) -> dict[str, Any]:
    hw = entry.hardware
    return {
        "folder": folder,
        "backend": entry.backend,
        "device": entry.saved.device,
        "precision": entry.precision,
        "technique": entry.technique,
        "knobs": entry.knobs,
        "options": entry.saved.options,
        "files": checksums,
        "metrics": entry.metrics,
        "hardware": {
            "key": hw.key,
            "device": hw.device.value,
            "description": hw.description,
            "features": sorted(hw.features),
            "cores": hw.cores,
            "gpu_name": hw.gpu_name,
            "gpu_memory_mb": hw.gpu_memory_mb,
            "compute_capability": hw.compute_capability,
        },
    }


def _load_entry(entry: WinnerEntry) -> Compiled:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="speedster-learner-"))
    for name, data in entry.saved.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return get_backend(entry.backend).load(
        folder, entry.saved.options, DeviceKind(entry.saved.device)
    )


def choose_entry(entries: Mapping[str, WinnerEntry], local: list[HardwareType]) -> str:
    """This machine's own hardware type when present, else the closest compatible one.

    Compatible: same device kind, every CPU feature it needs is here, and its backend runs
    here. Among compatible entries the one with the most features in common wins. A
    fallback is announced with a warning, because its speed was measured elsewhere.
    """
    for hardware in local:  # CPU first, then GPUs: an exact match on any device wins
        if hardware.key in entries:
            return hardware.key
    scored = []
    for key, entry in entries.items():
        for hardware in local:
            if (
                entry.hardware.device is not hardware.device
                or not entry.hardware.features <= hardware.features
            ):
                continue
            if get_backend(entry.backend).unavailable_reason(hardware.device) is None:
                scored.append((len(entry.hardware.features & hardware.features), key))
    if not scored:
        raise ArtifactError(
            f"this learner has winners for {list(entries)} but none can run on this machine "
            f"({', '.join(h.key for h in local)}); re-run optimize_model here to add one"
        )
    key = max(scored)[1]
    warnings.warn(
        f"no winner for this machine's hardware type ({local[0].key}); using the "
        f"winner measured on {key}",
        stacklevel=3,
    )
    return key


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
        _validate_manifest(manifest, manifest_path)
        return cls(root, manifest)

    def hardware_types(self) -> list[str]:
        return list(self.manifest["entries"])

    def load_model(
        self, path: str | Path | None = None, hardware_key: str | None = None
    ) -> HardwareKeyedLearner:
        """Load and verify every entry; the returned learner picks this machine's winner."""
        root = Path(path) if path is not None else self.path
        io = LearnerIO.from_json(self.manifest["io"])
        entries = {
            key: _read_entry(root, key, raw) for key, raw in self.manifest["entries"].items()
        }
        learner = HardwareKeyedLearner(io, entries)
        learner.for_hardware(hardware_key)  # load now, so a broken artifact fails here
        return learner


def _validate_manifest(manifest: Any, where: Path) -> None:
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
    for key, raw in entries.items():
        if raw.get("backend") not in backend_names():
            raise ArtifactError(
                f"{where}: entry {key!r} names unknown backend {raw.get('backend')!r}"
            )
        if not isinstance(raw.get("files"), dict) or not raw["files"]:
            raise ArtifactError(f"{where}: entry {key!r} lists no model file")


def _read_entry(root: Path, key: str, raw: Mapping[str, Any]) -> WinnerEntry:
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
    hw = raw["hardware"]
    hardware = HardwareType(
        hw["key"],
        DeviceKind(hw["device"]),
        hw.get("description", ""),
        frozenset(hw.get("features", [])),
        int(hw.get("cores", 0)),
        hw.get("gpu_name", ""),
        int(hw.get("gpu_memory_mb", 0)),
        hw.get("compute_capability", ""),
    )
    saved = SavedCandidate(raw["backend"], raw["device"], dict(raw["options"]), files)
    return WinnerEntry(
        hardware,
        raw["backend"],
        raw["precision"],
        raw.get("technique", ""),
        dict(raw.get("knobs", {})),
        dict(raw.get("metrics", {})),
        saved,
    )


def load_model(path: str | Path, hardware_key: str | None = None) -> HardwareKeyedLearner:
    """Load a learner saved with :meth:`HardwareKeyedLearner.save`."""
    return LearnerMetadata.read(path).load_model(path, hardware_key)
