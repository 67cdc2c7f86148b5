"""ONNX exports made once per search and shared by every node, instead of once per node.

Exporting a transformer to ONNX takes seconds to minutes and gives the same file on every
node, so the executor runs :func:`make_shared_export` once (as a task that has a node to
itself), keeps the files in the object store, and hands them to every trial whose backend
consumes ONNX. :func:`use_shared_export` writes them once per node and points the trial's
source model at them; the backends then take the file as they would a user's ONNX model.
Plain files, no Ray: the trial and confirmation bodies use them wherever they run; running the
export as a Ray task is :mod:`speedster_dist.runtime.ray._shared_export_job`'s.
"""

from __future__ import annotations

import hashlib
import shutil
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from speedster_dist.backends._onnx import export_onnx
from speedster_dist.cache import cache_dir, find_entry, publish_entry, scratch_dir
from speedster_dist.records import BackendInfo
from speedster_dist.runtime._trial import TrialPayload

__all__ = ["SharedExport", "consumes_onnx", "make_shared_export", "use_shared_export"]

_SHARED_DIR = "shared-onnx"


@dataclass(frozen=True)
class SharedExport:
    """An export's files (relative path -> bytes); ``key`` hashes their content."""

    key: str
    main: str = ""  # the graph file among ``files``
    files: dict[str, bytes] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.key and self.main in self.files)


def consumes_onnx(info: BackendInfo) -> bool:
    """A backend that accepts ONNX models builds from the export of a torch model."""
    return any("onnx" in cap.sources for cap in info.capabilities)


def make_shared_export(payload: TrialPayload) -> SharedExport:
    """Export the payload's torch model once; never raises (the error is recorded)."""
    workdir = scratch_dir("export-")
    try:
        path = export_onnx(payload.source, workdir)
        folder = path.parent
        files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        return SharedExport(_content_key(files), path.name, files)
    except Exception as exc:  # each trial then exports (and fails) on its own
        tail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return SharedExport("", error=tail[-1000:])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _content_key(files: Mapping[str, bytes]) -> str:
    """A hash of the files' names and contents (what a cached copy is checked against)."""
    digest = hashlib.sha256()
    for name, data in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()[:24]


def _intact(folder: Path, export: SharedExport) -> bool:
    """Whether ``folder`` holds exactly the export's files, byte for byte."""
    try:
        on_disk = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file() and not p.is_symlink()
        }
    except OSError:
        return False
    return set(on_disk) == set(export.files) and _content_key(on_disk) == export.key


def _write_files(export: SharedExport, folder: Path) -> None:
    for name, data in export.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def _materialize(export: SharedExport) -> Path:
    """The export's folder in this node's private cache: a cache entry (checked for owner,
    mode and checksums before reuse, published whole), and byte for byte the export's
    files. A damaged entry is passed over, never deleted: a neighbour trial may be reading
    a file of it."""
    folder = cache_dir(_SHARED_DIR)
    found = find_entry(folder, export.key)
    if found is not None and _intact(found, export):
        return found
    published = publish_entry(folder, export.key, lambda files: _write_files(export, files))
    if not _intact(published, export):
        raise OSError(f"the shared ONNX export at {published} does not match its files")
    return published


def use_shared_export(payload: TrialPayload, export: SharedExport | None) -> TrialPayload:
    """``payload`` whose source model points at the shared export (unchanged without one)."""
    if export is None or not export.ok or payload.source.onnx_path is not None:
        return payload
    folder = _materialize(export)
    source = replace(payload.source, onnx_path=folder / export.main)
    return replace(payload, source=source)
