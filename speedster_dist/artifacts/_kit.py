"""The re-benchmark kit: what ``rebench`` needs of a learner that the learner itself lacks.

A saved learner holds each hardware type's winner, not the original model nor the samples,
yet re-measuring a winner against its baseline, or searching a hardware type that joined the
fleet, needs both. ``optimize`` and ``sweep`` therefore write, next to the learner's
``manifest.json``, a ``rebench/`` folder::

    rebench/kit.json      format, model name, how to read the model and the inputs, the
                          search settings, and the SHA-256 of every file below
    rebench/model/ | rebench/model.onnx | model.pt | model.pt2
                          the original model in its own standard format (a Hugging Face
                          folder keeps its safetensors and tokenizer files, no pickle)
    rebench/tokenizer/    the tokenizer, when it is not in the model folder
    rebench/inputs.*      the sample inputs (texts or arrays)

Like the learner it is data: reading it verifies every checksum and keeps every name inside
the kit; the model is then read by :mod:`speedster_dist.fleet` (safetensors, ONNX,
TorchScript or torch.export files, never a pickle).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speedster_dist.artifacts._files import (
    UnsafeName,
    atomic_write_text,
    check_plain_name,
    find_symlinks,
    read_plain_file,
    sha256_bytes,
    sha256_file,
    sha256_plain_file,
)
from speedster_dist.artifacts._schema import parse_json
from speedster_dist.errors import ArtifactError, InputError

__all__ = [
    "KIT_DIR",
    "KIT_FILE",
    "MODEL_KINDS",
    "PICKLED_WEIGHTS",
    "TEXT_SUFFIXES",
    "InputSource",
    "Kit",
    "ModelSource",
    "read_kit",
    "write_kit",
]

KIT_DIR = "rebench"
KIT_FILE = "kit.json"
_MAX_KIT_JSON = 16 << 20
_FORMAT = "speedster-dist-rebench-kit"
_VERSION = 1

MODEL_KINDS = ("hf", "onnx", "torchscript", "torch_export")
TEXT_SUFFIXES = (".json", ".jsonl", ".txt")
PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass(frozen=True)
class ModelSource:
    """Where the model is and how to read it (``kind``: hf, onnx, torchscript, torch_export)."""

    path: Path
    kind: str
    model_class: str = "AutoModel"

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise InputError(f"unknown model kind {self.kind!r}; known: {MODEL_KINDS}")
        if self.kind == "hf" and not self.model_class.startswith("Auto"):
            raise InputError(
                f"--model-class must be a transformers Auto class, got {self.model_class!r}"
            )


@dataclass(frozen=True)
class InputSource:
    """Where the samples are; ``tokenizer`` is a folder (texts only)."""

    path: Path
    tokenizer: Path | None = None
    max_length: int | None = None
    batch_size: int = 1

    @property
    def is_text(self) -> bool:
        return self.path.suffix.lower() in TEXT_SUFFIXES


@dataclass(frozen=True)
class Kit:
    """A verified kit: the model and inputs to load, and the settings of the search."""

    model_name: str
    model: ModelSource
    inputs: InputSource
    options: dict[str, Any] = field(default_factory=dict)


def _copy_folder(source: Path, target: Path) -> None:
    # Top-level files only (config, safetensors, tokenizer); never pickled weights.
    target.mkdir(parents=True)
    for item in sorted(source.iterdir()):
        if item.is_file() and item.suffix.lower() not in PICKLED_WEIGHTS:
            shutil.copy2(item, target / item.name)
    if not any(target.glob("*.safetensors")):
        raise InputError(f"{source} has no .safetensors weights: the rebench kit needs them")


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        _copy_folder(source, target)
    else:
        shutil.copy2(source, target)


def write_kit(
    learner_dir: str | Path,
    model_name: str,
    model: ModelSource,
    inputs: InputSource,
    options: dict[str, Any],
) -> Path:
    """Write the kit of a learner saved under ``learner_dir``, replacing an older one
    atomically: it is written whole beside it, then swapped in by renames, so that a reader
    (or a crash) never meets half a kit."""
    final = Path(learner_dir) / KIT_DIR
    final.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f".{KIT_DIR}-", dir=final.parent))
    try:
        _write_kit_files(root, model_name, model, inputs, options)
        _swap_in(root, final)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return final


def _swap_in(staging: Path, final: Path) -> None:
    old = final.with_name(f".{KIT_DIR}-old-{uuid.uuid4().hex[:8]}")
    if final.exists() or final.is_symlink():
        os.rename(final, old)
    os.rename(staging, final)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def _write_kit_files(
    root: Path, model_name: str, model: ModelSource, inputs: InputSource, options: dict[str, Any]
) -> None:
    model_name_in_kit = "model" if model.kind == "hf" else f"model{model.path.suffix.lower()}"
    _copy(model.path, root / model_name_in_kit)
    tokenizer = None
    if inputs.tokenizer is not None:
        same = model.kind == "hf" and inputs.tokenizer.resolve() == model.path.resolve()
        tokenizer = "model" if same else "tokenizer"
        if not same:
            shutil.copytree(inputs.tokenizer, root / "tokenizer")
    inputs_name = f"inputs{inputs.path.suffix.lower()}"
    shutil.copy2(inputs.path, root / inputs_name)
    files = {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
    manifest = {
        "format": _FORMAT,
        "version": _VERSION,
        "model_name": model_name,
        "model": {"kind": model.kind, "path": model_name_in_kit, "class": model.model_class},
        "inputs": {
            "path": inputs_name,
            "tokenizer": tokenizer,
            "max_length": inputs.max_length,
            "batch_size": inputs.batch_size,
        },
        "options": options,
        "files": files,
    }
    atomic_write_text(root / KIT_FILE, json.dumps(manifest, indent=2, sort_keys=True))


def _inside(root: Path, relative: Any) -> Path:
    try:
        check_plain_name(relative)
    except UnsafeName as exc:
        raise ArtifactError(f"{root}/kit.json points outside the kit: {exc}") from None
    return root / relative


def _verify(root: Path, files: dict[str, str]) -> None:
    for name, digest in files.items():
        _inside(root, name)
        try:
            actual = sha256_plain_file(root, name)
        except FileNotFoundError:
            raise ArtifactError(f"rebench kit {root}: {name} is missing") from None
        except (UnsafeName, OSError) as exc:
            raise ArtifactError(f"rebench kit {root}: {exc}") from None
        if actual != digest:
            raise ArtifactError(
                f"rebench kit {root}: {name} does not match its checksum (changed after saving)"
            )
    # The model folder is read whole by its loader: a file the kit does not list (a planted
    # pickle, a tokenizer swapped in) would be read unchecked.
    listed = {*files, KIT_FILE}
    unlisted = [
        p.relative_to(root).as_posix()
        for p in sorted(root.rglob("*"))
        if not p.is_dir() and p.relative_to(root).as_posix() not in listed
    ]
    if unlisted:
        raise ArtifactError(
            f"rebench kit {root} holds files its {KIT_FILE} does not list: {unlisted[:5]}"
        )


def _kit_json(root: Path, learner_dir: str | Path, sha256: str | None) -> Any:
    """``kit.json``'s content, read once and checked against ``sha256`` when given."""
    try:
        data = read_plain_file(root, KIT_FILE, _MAX_KIT_JSON)
    except FileNotFoundError:
        raise ArtifactError(
            f"{learner_dir} has no rebench kit ({KIT_DIR}/{KIT_FILE}): save it with "
            "`speedster-dist optimize --out` or `sweep` so that it can be re-measured"
        ) from None
    except (UnsafeName, OSError) as exc:
        raise ArtifactError(f"rebench kit {root}: {KIT_FILE} cannot be read: {exc}") from None
    if sha256 is not None and sha256_bytes(data) != sha256:
        raise ArtifactError(
            f"rebench kit {root}: {KIT_FILE} is not the one saved with the learner (its "
            "digest differs from the manifest's): it was changed or replaced after saving"
        )
    return parse_json(data, f"{root}/{KIT_FILE}")


def read_kit(learner_dir: str | Path, sha256: str | None = None) -> Kit:
    """The verified kit of a learner; :class:`ArtifactError` when missing, corrupt or
    tampered with. ``sha256``: the digest of ``kit.json`` that the learner's manifest
    records (:attr:`LearnerMetadata.kit_sha256`); with it, the manifest's signature covers
    the kit (every file's checksum is in ``kit.json``)."""
    root = Path(learner_dir) / KIT_DIR
    links = find_symlinks(root) if root.is_dir() else []
    if links or root.is_symlink():
        raise ArtifactError(f"rebench kit {root} holds symbolic links: {links[:5]}")
    if not root.is_dir():
        raise ArtifactError(
            f"{learner_dir} has no rebench kit ({KIT_DIR}/{KIT_FILE}): save it with "
            "`speedster-dist optimize --out` or `sweep` so that it can be re-measured"
        )
    raw = _kit_json(root, learner_dir, sha256)
    try:
        if raw.get("format") != _FORMAT or raw.get("version") != _VERSION:
            raise ArtifactError(f"{root}/{KIT_FILE} is not a version {_VERSION} rebench kit")
        _verify(root, dict(raw["files"]))
        model = raw["model"]
        source = ModelSource(_inside(root, model["path"]), model["kind"], model["class"])
        spec = raw["inputs"]
        tokenizer = _inside(root, spec["tokenizer"]) if spec.get("tokenizer") else None
        inputs = InputSource(
            _inside(root, spec["path"]),
            tokenizer,
            spec.get("max_length"),
            int(spec.get("batch_size", 1)),
        )
        return Kit(str(raw["model_name"]), source, inputs, dict(raw.get("options", {})))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArtifactError(f"{root}/{KIT_FILE} is corrupt: {exc}") from exc
