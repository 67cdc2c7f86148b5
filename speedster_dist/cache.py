"""The node-local folders: the cache (ONNX exports, fused graphs, Optuna studies) and the
scratch folders of trials, both private to this user.

A folder other users can write to would let them plant a model that a later trial picks up,
or a link that makes a trial write elsewhere: every folder here is created ``0700``, and one
that exists already must belong to this user and be writable by nobody else (else it is not
used). Scratch folders of processes that were killed (a trial force-cancelled at its time
limit cannot clean up) are swept by age.

Cached files (an ONNX export, its fused graph) are **entries**: a folder written whole in a
private staging folder and renamed into place, holding ``files/`` and ``entry.json``, the
SHA-256 of every file recorded when it was written. An entry is reused only when it, its
files and its record belong to this user, nobody else may write them, and every file still
matches its checksum (:func:`find_entry`). One that fails is left where it is (a process of
this user may still be reading it) and a fresh entry is written beside it under another
name (:func:`publish_entry`); nothing here deletes an entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "CACHE_ENV",
    "STALE_AFTER_S",
    "cache_dir",
    "cache_root",
    "entry_problem",
    "file_sha256",
    "find_entry",
    "private_dir",
    "publish_entry",
    "scratch_dir",
]

logger = logging.getLogger(__name__)

CACHE_ENV = "SPEEDSTER_DIST_CACHE"
# A scratch folder untouched this long belongs to a process that died: trials last minutes.
STALE_AFTER_S = 24 * 3600.0
_SCRATCH = "scratch"
# An entry's layout: its files, and the record of their checksums written with them.
ENTRY_FILES = "files"
ENTRY_RECORD = "entry.json"
# Names an entry may take: ``key``, then ``key~1`` ... when earlier ones failed their check.
_ENTRY_NAMES = 8
_REPORTED: set[str] = set()  # the entries this process said it does not reuse


def cache_root() -> Path:
    """``$SPEEDSTER_DIST_CACHE`` or ``~/.cache/speedster-dist`` (not created here)."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "speedster-dist"


def _owner_problem(path: Path, info: os.stat_result, want_dir: bool) -> str | None:
    """Why ``path`` (its ``lstat``) may not be trusted: a link, the wrong kind of file,
    another user's, or writable by others; None when it may."""
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a link"
    if want_dir != stat.S_ISDIR(info.st_mode) or not (want_dir or stat.S_ISREG(info.st_mode)):
        return f"{path} is not a {'plain folder' if want_dir else 'regular file'}"
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        return f"{path} belongs to another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by other users (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def private_dir(path: Path) -> Path:
    """``path``, created ``0700`` if missing; PermissionError when it exists but is a link,
    belongs to another user, or others may write to it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    problem = _owner_problem(path, os.lstat(path), want_dir=True)
    if problem is not None:
        raise PermissionError(problem)
    return path


def cache_dir(kind: str) -> Path:
    """``cache_root()/kind`` for one kind of entry, both checked by :func:`private_dir`."""
    return private_dir(private_dir(cache_root()) / kind)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a regular file, opened without following a link."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path, prefix: str = "") -> Iterator[tuple[str, Path]]:
    """(relative name, path) of every file under ``folder``; raises ValueError on anything,
    ``folder`` included, that may not be trusted (from ``lstat``: links are never followed)."""
    problem = _owner_problem(folder, os.lstat(folder), want_dir=True)
    if problem is not None:
        raise ValueError(problem)
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path, name = Path(entry.path), prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            yield from _files(path, name + "/")
            continue
        problem = _owner_problem(path, os.lstat(path), want_dir=False)
        if problem is not None:
            raise ValueError(problem)
        yield name, path


def _recorded(entry: Path) -> dict[str, str]:
    record = entry / ENTRY_RECORD
    problem = _owner_problem(record, os.lstat(record), want_dir=False)
    if problem is not None:
        raise ValueError(problem)
    fd = os.open(record, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        files = json.loads(handle.read(1 << 20)).get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ValueError(f"{record} records no checksums")
    return files


def entry_problem(entry: Path) -> str | None:
    """Why the cache entry ``entry`` may not be reused; None when it may (see the module)."""
    try:
        problem = _owner_problem(entry, os.lstat(entry), want_dir=True)
        if problem is not None:
            return problem
        recorded = _recorded(entry)
        on_disk = dict(_files(entry / ENTRY_FILES))
        if set(on_disk) != set(recorded):
            return f"{entry} holds other files than the ones written there"
        for name, path in on_disk.items():
            if file_sha256(path) != recorded[name]:
                return f"{path} does not match the checksum recorded when it was written"
    except (OSError, ValueError, AttributeError) as exc:  # missing, unreadable, not JSON
        return f"{entry} cannot be checked: {exc}"
    return None


def _entry_names(folder: Path, key: str) -> list[Path]:
    return [folder / key, *(folder / f"{key}~{n}" for n in range(1, _ENTRY_NAMES))]


def find_entry(folder: Path, key: str) -> Path | None:
    """The files folder of an intact entry ``key`` in ``folder`` (a :func:`cache_dir`);
    None when there is none. Entries that fail their check are logged and left alone."""
    for entry in _entry_names(folder, key):
        if not os.path.lexists(entry):
            continue
        problem = entry_problem(entry)
        if problem is None:
            return entry / ENTRY_FILES
        if problem not in _REPORTED:  # once per process: every trial on the node looks
            _REPORTED.add(problem)
            logger.warning("cache entry not reused (a fresh one is written): %s", problem)
    return None


def _record(staging: Path) -> None:
    checksums = {name: file_sha256(path) for name, path in _files(staging / ENTRY_FILES)}
    fd = os.open(staging / ENTRY_RECORD, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"files": checksums}, handle, indent=1, sort_keys=True)


def publish_entry(folder: Path, key: str, fill: Callable[[Path], object]) -> Path:
    """Write entry ``key`` in ``folder`` and return its files folder.

    ``fill(files)`` writes the files into a private staging folder; their checksums are
    recorded and the folder is renamed into place whole, so that no process ever sees half
    an entry. The first free name is taken (an entry another process published first under
    that name is used instead, when it is intact); a name held by an entry that fails its
    check is passed over, never deleted. Raises OSError when no name is left.
    """
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder))
    try:
        (staging / ENTRY_FILES).mkdir(mode=0o700)
        fill(staging / ENTRY_FILES)
        _record(staging)
        for entry in _entry_names(folder, key):
            try:
                staging.rename(entry)  # atomic; fails when the name is taken
                return entry / ENTRY_FILES
            except OSError:
                if entry_problem(entry) is None:  # published first by another process
                    return entry / ENTRY_FILES
        raise OSError(f"no free name left for cache entry {key} in {folder}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone when renamed; else ours to remove


def _scratch_root() -> Path:
    """The private parent of scratch folders: in the cache, else a per-user temp folder."""
    user = os.geteuid() if hasattr(os, "geteuid") else "user"
    for candidate in (cache_root() / _SCRATCH, Path(tempfile.gettempdir()) / f"speedster-{user}"):
        try:
            return private_dir(candidate)
        except OSError as exc:
            logger.warning("scratch folder %s unusable (%s)", candidate, exc)
    return Path(tempfile.mkdtemp(prefix="speedster-"))  # private and unique, at worst


def sweep_stale(root: Path, max_age_s: float = STALE_AFTER_S) -> int:
    """Remove the folders in ``root`` untouched for ``max_age_s``; how many were removed."""
    removed = 0
    deadline = time.time() - max_age_s
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False) and entry.stat().st_mtime < deadline:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
        except OSError:  # taken by a neighbour meanwhile
            continue
    return removed


def scratch_dir(prefix: str) -> Path:
    """A new private scratch folder (its caller removes it); stale ones are swept first."""
    root = _scratch_root()
    sweep_stale(root)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))
