"""The shape of ``manifest.json``, checked field by field before anything of it is used.

A manifest is untrusted input: every field a loader reads is checked here, so that a damaged
or hostile one fails with :class:`ArtifactError` saying which field is wrong, never with a
``KeyError`` (or worse) somewhere later.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from speedster_dist.artifacts._encoder import TOKENIZER_FILES, check_pooling
from speedster_dist.artifacts._entries import PORTABLE_KEY
from speedster_dist.artifacts._files import UnsafeName, check_plain_name
from speedster_dist.backends import backend_names, saves_code
from speedster_dist.errors import ArtifactError
from speedster_dist.records import DeviceKind, Precision

__all__ = [
    "CARD_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "KIT_SHA256",
    "READABLE_VERSIONS",
    "ArtifactError",
    "parse_json",
    "validate_manifest",
]

FORMAT = "speedster-dist-learner"
# 2: each entry may carry ``serving``, the operating point it was chosen for (issue 21).
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # a version 1 manifest reads as one without operating points
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_OUTPUT_KINDS = ("tensor", "tuple", "list", "dict", "model_output")
_MAX_FILES = 10_000
CARD_FILE = "README.md"  # the model card, at the learner's top level
KIT_SHA256 = "kit_sha256"  # the rebench kit's kit.json, covered by the manifest's signature
_MAX_DIGITS = 64  # no count or size in a manifest comes near; Python refuses 4300 itself
_MAX_DEPTH = 32  # a manifest nests 5 levels; a kit's options a few more


def _integer(text: str) -> int:
    if len(text) > _MAX_DIGITS:
        raise ValueError(f"a number of {len(text)} digits (at most {_MAX_DIGITS} are read)")
    return int(text)


def parse_json(data: bytes, where: str) -> Any:
    """``data`` (UTF-8 JSON) parsed; :class:`ArtifactError` saying why it cannot be, never a
    raw ``RecursionError`` (deep nesting) or ``ValueError`` (bad text, a huge number)."""
    too_deep = ArtifactError(f"{where} is corrupt: its JSON nests more than {_MAX_DEPTH} levels")
    try:
        value = json.loads(data.decode("utf-8"), parse_int=_integer)
    except RecursionError:
        raise too_deep from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a number too long
        raise ArtifactError(f"{where} is corrupt: {exc}") from None
    if _too_deep(value):  # what parses just below Python's limit would fail later (dumps)
        raise too_deep
    return value


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests deeper than :data:`_MAX_DEPTH` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > _MAX_DEPTH:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _fail(where: str, message: str) -> ArtifactError:
    return ArtifactError(f"{where}: {message}")


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"expected an object, found {type(value).__name__}")
    return value


def _field(raw: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in raw:
        raise _fail(where, f"the field {name!r} is missing")
    value = raw[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise _fail(f"{where}.{name}", f"unexpected {type(value).__name__} {value!r:.80}")
    return value


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, "expected a list of strings")
    return value


def _json_scalars(value: Any, where: str) -> None:
    for key, item in _dict(value, where).items():
        if isinstance(item, float) and not math.isfinite(item):
            raise _fail(f"{where}.{key}", "not a finite number")
        if item is not None and not isinstance(item, str | int | float | bool):
            raise _fail(f"{where}.{key}", f"unexpected {type(item).__name__}")


def _check_io(raw: Any, where: str) -> None:
    io = _dict(raw, where)
    _strings(_field(io, "input_names", list, where), f"{where}.input_names")
    _field(io, "keyword", bool, where)
    output = _dict(_field(io, "output", dict, where), f"{where}.output")
    if output.get("kind") not in _OUTPUT_KINDS:
        raise _fail(f"{where}.output.kind", f"{output.get('kind')!r} is not an output kind")
    _strings(_field(output, "names", list, f"{where}.output"), f"{where}.output.names")
    if not isinstance(output.get("class_path", ""), str):
        raise _fail(f"{where}.output.class_path", "expected a string")
    shapes = io.get("input_shapes")
    if shapes is not None and (
        not isinstance(shapes, list)
        or len(shapes) != len(io["input_names"])
        or not all(isinstance(s, list) and all(_size(d) for d in s) for s in shapes)
    ):
        raise _fail(f"{where}.input_shapes", "expected one list of sizes (or null) per input")


def _size(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


def _check_files(raw: Any, where: str) -> None:
    files = _dict(raw, where)
    if not files or len(files) > _MAX_FILES:
        raise _fail(where, "lists no model file")
    for name, digest in files.items():
        try:
            check_plain_name(name)
        except UnsafeName as exc:
            raise _fail(where, str(exc)) from None
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise _fail(f"{where}[{name!r}]", "is not a SHA-256 hex digest")


def _check_folder(raw: Mapping[str, Any], where: str) -> None:
    folder = _field(raw, "folder", str, where)
    try:
        check_plain_name(folder, "folder")
    except UnsafeName as exc:
        raise _fail(where, str(exc)) from None
    if "/" in folder:
        raise _fail(f"{where}.folder", f"{folder!r} is not a plain sub-folder name")


def check_saved(raw: Any, where: str) -> None:
    """One candidate's files record (an entry, or the portable fallback)."""
    saved = _dict(raw, where)
    _check_folder(saved, where)
    backend = saved.get("backend")
    if not isinstance(backend, str) or backend not in backend_names():
        raise ArtifactError(f"{where} names unknown backend {backend!r}")
    if saved.get("device") not in tuple(d.value for d in DeviceKind):
        raise _fail(f"{where}.device", f"{saved.get('device')!r} is not 'cpu' or 'gpu'")
    _dict(_field(saved, "options", dict, where), f"{where}.options")
    _check_files(_field(saved, "files", dict, where), f"{where}.files")


def _check_hardware(raw: Any, key: str, device: str, where: str) -> None:
    hardware = _dict(raw, where)
    if hardware.get("key") != key:
        raise _fail(f"{where}.key", f"{hardware.get('key')!r} is not the entry's key {key!r}")
    if hardware.get("device") != device:
        raise _fail(f"{where}.device", "differs from the entry's device")
    _strings(hardware.get("features", []), f"{where}.features")
    for name in ("cores", "gpu_memory_mb"):
        value = hardware.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _fail(f"{where}.{name}", "expected an integer >= 0")


def _check_serving(raw: Any, where: str) -> None:
    """An entry's operating point: whole batch size and concurrency, scalars otherwise."""
    serving = _dict(raw, where)
    _json_scalars({k: v for k, v in serving.items() if k != "knobs"}, where)
    _json_scalars(serving.get("knobs", {}), f"{where}.knobs")
    for name in ("batch_size", "concurrency"):
        value = serving.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _fail(f"{where}.{name}", f"expected an integer >= 1, found {value!r:.40}")
    for name in ("throughput", "p99_ms"):
        value = serving.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _fail(f"{where}.{name}", f"expected a number, found {value!r:.40}")


def _check_entry(key: Any, raw: Any, where: str) -> None:
    if not isinstance(key, str) or not key or len(key) > 200 or any(c.isspace() for c in key):
        raise _fail(where, f"hardware type {key!r} is not a non-empty word")
    if key == PORTABLE_KEY:
        raise _fail(where, f"{PORTABLE_KEY!r} names the portable fallback, not a hardware type")
    check_saved(raw, where)
    if raw.get("precision") not in tuple(p.value for p in Precision):
        raise _fail(f"{where}.precision", f"{raw.get('precision')!r} is not a precision")
    if not isinstance(raw.get("technique", ""), str):
        raise _fail(f"{where}.technique", "expected a string")
    _json_scalars(raw.get("knobs", {}), f"{where}.knobs")
    _json_scalars(raw.get("metrics", {}), f"{where}.metrics")
    if "serving" in raw:
        _check_serving(raw["serving"], f"{where}.serving")
    _check_hardware(_field(raw, "hardware", dict, where), key, raw["device"], f"{where}.hardware")


def validate_manifest(manifest: Any, where: str) -> None:
    """Raise :class:`ArtifactError` naming the first field of ``manifest`` that is wrong."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{where} is not a speedster-dist learner manifest")
    version = manifest.get("version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise ArtifactError(
            f"{where} has format version {version!r}, this speedster-dist reads versions "
            f"{', '.join(str(v) for v in READABLE_VERSIONS)}"
        )
    _check_io(manifest.get("io"), f"{where}: io")
    entries = manifest.get("entries")
    if not isinstance(entries, dict) or not entries:
        raise ArtifactError(f"{where} holds no winner")
    for key, raw in entries.items():
        _check_entry(key, raw, f"{where}: entry {key!r}")
    if "portable" in manifest:
        check_saved(manifest["portable"], f"{where}: the portable fallback")
    if "data_only" in manifest:
        _check_data_only(manifest["data_only"], entries, where)
    if "encoder" in manifest:
        _check_encoder(manifest["encoder"], f"{where}: encoder")
    if "about" in manifest:
        _json_scalars(manifest["about"], f"{where}: about")
    if "card" in manifest:
        _check_card(manifest["card"], f"{where}: card")
    kit = manifest.get(KIT_SHA256, "0" * 64)
    if not isinstance(kit, str) or not _SHA256.match(kit):
        raise _fail(f"{where}: {KIT_SHA256}", "is not a SHA-256 hex digest")


def _check_data_only(raw: Any, entries: Mapping[str, Any], where: str) -> None:
    """The data-only stand-ins of program winners: each is an entry of a hardware type the
    learner has a winner for, saved by a backend whose files are data."""
    for key, entry in _dict(raw, f"{where}: data_only").items():
        at = f"{where}: data-only entry {key!r}"
        if key not in entries:
            raise _fail(at, "stands in for no winner (no entry of that hardware type)")
        _check_entry(key, entry, at)
        if saves_code(entry["backend"]):
            raise _fail(at, f"{entry['backend']!r} saves programs, not data")


def _check_encoder(raw: Any, where: str) -> None:
    """A sentence-transformer's pooling and tokenizer (``artifacts/_encoder.py``)."""
    encoder = _dict(raw, where)
    _check_folder(encoder, where)
    files = _field(encoder, "files", dict, where)
    _check_files(files, f"{where}.files")
    unknown = sorted(set(files) - TOKENIZER_FILES)
    if unknown:
        raise _fail(f"{where}.files", f"{unknown} are not tokenizer data files")
    check_pooling(_field(encoder, "pooling", dict, where), f"{where}.pooling")
    _field(encoder, "normalize", bool, where)


def _check_card(raw: Any, where: str) -> None:
    """The model card: ``README.md`` and its SHA-256 (``artifacts/_card.py``)."""
    card = _dict(raw, where)
    if card.get("file") != CARD_FILE:
        raise _fail(f"{where}.file", f"{card.get('file')!r:.80} is not {CARD_FILE!r}")
    digest = card.get("sha256")
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise _fail(f"{where}.sha256", "is not a SHA-256 hex digest")
