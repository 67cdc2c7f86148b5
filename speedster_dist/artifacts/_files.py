"""File helpers every on-disk format here shares: checksums, atomic writes, and reading a
saved artifact as the untrusted input it is.

Names inside an artifact are plain relative paths (``a/b.onnx``): no ``..``, no absolute
path, no backslash, nothing empty. Files are opened one path component at a time relative
to the artifact's folder, never following a symbolic link (``O_NOFOLLOW`` at every step),
so a link planted anywhere in the artifact cannot redirect a read outside it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "UnsafeName",
    "VerifiedFiles",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_plain_name",
    "find_symlinks",
    "read_plain_file",
    "sha256_bytes",
    "sha256_file",
    "sha256_plain_file",
]

_BLOCK = 1 << 20
_MAX_NAME = 512
_MAX_DEPTH = 8


class UnsafeName(ValueError):
    """A name or a file of an artifact that must not be used (the message says why)."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, as hex, read in blocks (models can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a
    torn one: a hidden sibling is written, then renamed over ``path`` (a link there is
    replaced, not followed)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """:func:`atomic_write_text` for bytes."""
    staged = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}"
    try:
        with open(staged, "xb") as handle:
            handle.write(data)
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def check_plain_name(name: object, what: str = "file name") -> str:
    """``name`` if it is a plain relative path inside a folder, else :class:`UnsafeName`."""
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
        raise UnsafeName(f"{what} {name!r} is not a non-empty string")
    if "\\" in name or "\x00" in name or name.startswith("/"):
        raise UnsafeName(f"{what} {name!r} is not a plain relative path: it could point outside")
    parts = name.split("/")
    if len(parts) > _MAX_DEPTH or any(part in ("", ".", "..") for part in parts):
        raise UnsafeName(
            f"{what} {name!r} is not a plain relative path (no '..', no '//'): "
            "it could point outside"
        )
    return name


def find_symlinks(root: Path) -> list[str]:
    """Every symbolic link under ``root`` (not followed), relative to it."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            if os.path.islink(os.path.join(folder, name)):
                found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


def _open_below(root_fd: int, parts: list[str]) -> int:
    """A read-only descriptor of ``root/parts``, no link followed at any step."""
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
        # Only a regular file is opened: opening a FIFO for reading waits for a writer (for
        # ever), a device node may act on open. O_NONBLOCK keeps a FIFO swapped in after
        # the check from blocking; the caller's fstat refuses it.
        mode = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode
        if not stat.S_ISREG(mode):
            what = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
            raise UnsafeName(f"{'/'.join(parts)!r} is {what} (a saved learner holds only files)")
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)


@contextmanager
def _plain_file(root: Path, name: str) -> Iterator[BinaryIO]:
    """``root/name`` open for reading, if it is a plain name of a regular file reached
    through no link (else :class:`UnsafeName`; FileNotFoundError when it is missing)."""
    check_plain_name(name)
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fd = _open_below(root_fd, name.split("/"))
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise UnsafeName(f"{name!r} cannot be opened safely: {exc.strerror}") from exc
    finally:
        os.close(root_fd)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise UnsafeName(f"{name!r} is not a regular file")
        yield handle


def read_plain_file(root: Path, name: str, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``root/name``; :class:`UnsafeName` when ``name`` is not
    plain, a component is a link, or it is not a regular file (a FIFO is refused without
    waiting on it); FileNotFoundError when it is missing."""
    with _plain_file(root, name) as handle:
        data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise UnsafeName(f"{name!r} is larger than {max_bytes} bytes")
    return data


def sha256_plain_file(root: Path, name: str) -> str:
    """The SHA-256 of ``root/name``, opened as :func:`read_plain_file` opens it and read in
    blocks (a kit's model can be gigabytes)."""
    digest = hashlib.sha256()
    with _plain_file(root, name) as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


class VerifiedFiles(Mapping[str, bytes]):
    """The files of one saved entry, each read (and checked against its SHA-256) only when
    asked for: a learner reads the entry it runs, not every entry of the artifact."""

    def __init__(self, root: Path, folder: str, checksums: Mapping[str, str]) -> None:
        self._root = root
        self._folder = folder
        self._checksums = dict(checksums)

    def __getitem__(self, name: str) -> bytes:
        digest = self._checksums[name]
        data = read_plain_file(self._root, f"{self._folder}/{name}")
        if sha256_bytes(data) != digest:
            raise UnsafeName(
                f"{self._folder}/{name} does not match its checksum "
                "(the file was changed or corrupted after saving)"
            )
        return data

    def __contains__(self, name: object) -> bool:  # a name is listed: nothing is read
        return name in self._checksums

    def __iter__(self) -> Iterator[str]:
        return iter(self._checksums)

    def __len__(self) -> int:
        return len(self._checksums)
