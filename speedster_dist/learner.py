"""The result users get: a learner called exactly like the original model.

:class:`HardwareKeyedLearner` holds one winner per hardware type and runs the one for the
machine it is on, plus a *portable fallback*: the original model in a standard format (the
baseline trial's files), for machines of a type nobody measured. Saved, it is data, not
code: ``manifest.json`` plus standard model files (ONNX, OpenVINO IR, TorchScript, TensorRT
engines), each with its SHA-256. Loading checks every checksum and never unpickles or
``exec``s anything read from the artifact.

Which entry runs where: this machine's own hardware type; else the closest compatible
winner (same device kind, every CPU feature it needs present here, its backend available
here, and for GPU engines the same compute capability); else the portable fallback. Both
fallbacks are announced with a warning and recorded in :attr:`HardwareKeyedLearner.selection`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from speedster_dist.backends import Compiled, backend_names, get_backend
from speedster_dist.hardware import hardware_from_json, hardware_to_json, local_hardware_types
from speedster_dist.modelio import OutputSpec
from speedster_dist.records import DeviceKind, HardwareType, SavedCandidate, TrialResult

__all__ = [
    "PORTABLE_KEY",
    "ArtifactError",
    "HardwareKeyedLearner",
    "InferenceLearner",
    "LearnerIO",
    "LearnerMetadata",
    "Selection",
    "WinnerEntry",
    "load_model",
]

FORMAT = "speedster-dist-learner"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# The key (and ``hardware_key=`` value) of the portable fallback; its folder in an artifact.
PORTABLE_KEY = "portable"
_PORTABLE_FOLDER = "_portable"


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


def _portable_entry(saved: SavedCandidate) -> WinnerEntry:
    hardware = HardwareType(
        PORTABLE_KEY, DeviceKind(saved.device), "the original model, not optimized for any type"
    )
    return WinnerEntry(hardware, saved.backend, "fp32", "", {}, {}, saved)


@dataclass(frozen=True)
class Selection:
    """Which entry a learner runs and why: ``how`` is ``"own"`` (this machine's type),
    ``"compatible"`` (closest compatible winner), ``"portable"`` (the fallback) or
    ``"explicit"`` (asked for by key)."""

    key: str
    how: str
    message: str = ""


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
    """Winners keyed by hardware type; calling it runs the winner for this machine.

    ``portable`` (optional) is the original model in a standard format, used where no
    winner fits the machine. ``selection`` says what the last default call chose and why.
    """

    io: LearnerIO
    entries: dict[str, WinnerEntry]
    summary: str = ""
    results: list[TrialResult] = field(default_factory=list)  # every trial of the search
    portable: SavedCandidate | None = None
    selection: Selection | None = None
    _active: dict[str, InferenceLearner] = field(default_factory=dict, repr=False)

    def hardware_types(self) -> list[str]:
        """The hardware types with a winner (the portable fallback is not one)."""
        return list(self.entries)

    def select(self, hardware_key: str | None = None) -> Selection:
        """What :meth:`for_hardware` would run for ``hardware_key`` (None: this machine)."""
        if hardware_key is not None:
            if hardware_key == PORTABLE_KEY and self.portable is not None:
                return Selection(PORTABLE_KEY, "explicit")
            if hardware_key not in self.entries:
                has = self.hardware_types() + ([PORTABLE_KEY] if self.portable else [])
                raise ArtifactError(
                    f"no winner for hardware type {hardware_key!r}; this learner has {has}"
                )
            return Selection(hardware_key, "explicit")
        local = local_hardware_types()
        own = next((h.key for h in local if h.key in self.entries), None)
        if own is not None:
            return Selection(own, "own")
        closest = _closest(self.entries, local)
        if closest is not None:
            key, _ = closest
            return Selection(key, "compatible", _fallback_message(local, key))
        if self.portable is None:
            raise _none_fits(self.entries, local)
        message = (
            f"no winner of this learner ({', '.join(self.entries)}) can run on this machine "
            f"({', '.join(h.key for h in local)}); using the portable fallback: the original "
            f"model, not optimized ({self.portable.backend}, {self.portable.device})"
        )
        return Selection(PORTABLE_KEY, "portable", message)

    def for_hardware(self, hardware_key: str | None = None) -> InferenceLearner:
        """The learner for ``hardware_key`` (default: this machine's type, else the closest
        compatible winner, else the portable fallback; a fallback warns once)."""
        if hardware_key is not None:
            selection = self.select(hardware_key)
        else:
            if self.selection is None:  # decided once: a fallback warns once, not per call
                self.selection = self.select()
                if self.selection.message:
                    warnings.warn(self.selection.message, stacklevel=3)
            selection = self.selection
        key = selection.key
        if key not in self._active:
            if key == PORTABLE_KEY:
                assert self.portable is not None
                entry = _portable_entry(self.portable)
            else:
                entry = self.entries[key]
            self._active[key] = InferenceLearner(_load_entry(entry), self.io, entry)
        return self._active[key]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.for_hardware()(*args, **kwargs)

    def save(self, path: str | Path) -> Path:
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
            "io": self.io.to_json(),
            "entries": {},
        }
        for key, entry in self.entries.items():
            folder = _free_folder(root, _folder(key))
            checksums = _write_files(root / folder, entry.saved)
            manifest["entries"][key] = _entry_json(entry, folder, checksums)
        if self.portable is not None:
            folder = _free_folder(root, _PORTABLE_FOLDER)
            checksums = _write_files(root / folder, self.portable)
            manifest["portable"] = _saved_json(self.portable, folder, checksums)
        staged = root / f".{MANIFEST}.{uuid.uuid4().hex[:8]}"
        staged.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        os.replace(staged, root / MANIFEST)
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
    return folder if folder != _PORTABLE_FOLDER else f"{folder}_"


def _saved_json(saved: SavedCandidate, folder: str, checksums: dict[str, str]) -> dict[str, Any]:
    return {
        "folder": folder,
        "backend": saved.backend,
        "device": saved.device,
        "options": saved.options,
        "files": checksums,
    }


def _entry_json(entry: WinnerEntry, folder: str, checksums: dict[str, str]) -> dict[str, Any]:
    return {
        **_saved_json(entry.saved, folder, checksums),
        "precision": entry.precision,
        "technique": entry.technique,
        "knobs": entry.knobs,
        "metrics": entry.metrics,
        "hardware": hardware_to_json(entry.hardware),
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


def _compatible(entry: WinnerEntry, hardware: HardwareType) -> bool:
    """Can ``entry`` run on ``hardware``? Same device kind; every CPU feature it needs; a GPU
    engine (device-specific, e.g. TensorRT) only on the compute capability it was built for."""
    wanted = entry.hardware
    if wanted.device is not hardware.device or not wanted.features <= hardware.features:
        return False
    if wanted.device is DeviceKind.GPU and "engine" in entry.saved.options:
        return wanted.compute_capability == hardware.compute_capability
    try:
        return get_backend(entry.backend).unavailable_reason(hardware.device) is None
    except Exception:  # a backend that cannot even be imported here
        return False


def _closest(
    entries: Mapping[str, WinnerEntry], local: list[HardwareType]
) -> tuple[str, HardwareType] | None:
    """The compatible entry with the most features in common with this machine, if any."""
    scored = [
        (len(entry.hardware.features & hardware.features), key, hardware)
        for key, entry in entries.items()
        for hardware in local
        if _compatible(entry, hardware)
    ]
    if not scored:
        return None
    _, key, hardware = max(scored, key=lambda s: (s[0], s[1]))
    return key, hardware


def _fallback_message(local: list[HardwareType], key: str) -> str:
    return (
        f"no winner for this machine's hardware type ({local[0].key}); using the "
        f"closest compatible winner, measured on {key}"
    )


def _none_fits(entries: Mapping[str, WinnerEntry], local: list[HardwareType]) -> ArtifactError:
    return ArtifactError(
        f"this learner has winners for {list(entries)} but none can run on this machine "
        f"({', '.join(h.key for h in local)}) and it has no portable fallback; "
        "re-run optimize_model here to add one"
    )


def choose_entry(entries: Mapping[str, WinnerEntry], local: list[HardwareType]) -> str:
    """This machine's own hardware type when present, else the closest compatible one.

    Compatible: see :func:`_compatible`. Among compatible entries the one with the most
    features in common wins. A fallback is announced with a warning, because its speed was
    measured elsewhere. Raises :class:`ArtifactError` when none is compatible.
    """
    for hardware in local:  # CPU first, then GPUs: an exact match on any device wins
        if hardware.key in entries:
            return hardware.key
    closest = _closest(entries, local)
    if closest is None:
        raise _none_fits(entries, local)
    warnings.warn(_fallback_message(local, closest[0]), stacklevel=3)
    return closest[0]


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
        """The hardware types with a winner (see :attr:`has_portable` for the fallback)."""
        return list(self.manifest["entries"])

    @property
    def has_portable(self) -> bool:
        return "portable" in self.manifest

    def describe(self) -> list[dict[str, Any]]:
        """One row per entry (then the portable fallback): what it is and what it measured."""
        rows = []
        for key, raw in self.manifest["entries"].items():
            metrics = raw.get("metrics", {})
            p50, base = metrics.get("latency_p50_s"), metrics.get("baseline_p50_s")
            rows.append(
                {
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
            )
        if self.has_portable:
            raw = self.manifest["portable"]
            rows.append(
                {
                    "hardware_type": PORTABLE_KEY,
                    "description": "the original model, not optimized (fallback)",
                    "backend": raw["backend"],
                    "precision": "fp32",
                    "technique": "",
                    "device": raw["device"],
                    "latency_p50_ms": None,
                    "speedup": None,
                    "metric_drop": 0.0,
                }
            )
        return rows

    def load_model(
        self, path: str | Path | None = None, hardware_key: str | None = None
    ) -> HardwareKeyedLearner:
        """Load and verify every entry; the returned learner runs ``hardware_key``'s entry
        (``"portable"`` for the fallback) or, by default, picks this machine's as described
        in the module docstring, warning when it falls back."""
        root = Path(path) if path is not None else self.path
        io = LearnerIO.from_json(self.manifest["io"])
        entries = {
            key: _read_entry(root, key, raw) for key, raw in self.manifest["entries"].items()
        }
        portable = None
        if self.has_portable:
            portable = _read_saved(root, PORTABLE_KEY, self.manifest["portable"])
        learner = HardwareKeyedLearner(io, entries, portable=portable)
        if hardware_key is not None:  # calling the learner runs the asked-for entry
            learner.selection = learner.select(hardware_key)
        learner.for_hardware()  # load now, so a broken artifact fails here
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
    parts = [(f"entry {key!r}", raw) for key, raw in entries.items()]
    if "portable" in manifest:
        parts.append(("the portable fallback", manifest["portable"]))
    for name, raw in parts:
        if not isinstance(raw, dict) or raw.get("backend") not in backend_names():
            backend = raw.get("backend") if isinstance(raw, dict) else None
            raise ArtifactError(f"{where}: {name} names unknown backend {backend!r}")
        if not isinstance(raw.get("files"), dict) or not raw["files"]:
            raise ArtifactError(f"{where}: {name} lists no model file")


def _read_saved(root: Path, key: str, raw: Mapping[str, Any]) -> SavedCandidate:
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
    saved = _read_saved(root, key, raw)
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


def load_model(path: str | Path, hardware_key: str | None = None) -> HardwareKeyedLearner:
    """Load a learner saved with :meth:`HardwareKeyedLearner.save`."""
    return LearnerMetadata.read(path).load_model(path, hardware_key)
