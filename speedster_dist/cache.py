"""The node-local folders: the cache (ONNX exports, fused graphs, Optuna studies) and the
scratch folders of trials, both private to this user.

A folder other users can write to would let them plant a model that a later trial picks up,
or a link that makes a trial write elsewhere: every folder here is created ``0700``, and one
that exists already must belong to this user and be writable by nobody else (else it is not
used). Scratch folders of processes that were killed (a trial force-cancelled at its time
limit cannot clean up) are swept by age.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

__all__ = ["CACHE_ENV", "STALE_AFTER_S", "cache_root", "private_dir", "scratch_dir"]

logger = logging.getLogger(__name__)

CACHE_ENV = "SPEEDSTER_DIST_CACHE"
# A scratch folder untouched this long belongs to a process that died: trials last minutes.
STALE_AFTER_S = 24 * 3600.0
_SCRATCH = "scratch"


def cache_root() -> Path:
    """``$SPEEDSTER_DIST_CACHE`` or ``~/.cache/speedster-dist`` (not created here)."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "speedster-dist"


def private_dir(path: Path) -> Path:
    """``path``, created ``0700`` if missing; PermissionError when it exists but is a link,
    belongs to another user, or others may write to it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"{path} is not a plain folder")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise PermissionError(f"{path} belongs to another user")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(f"{path} is writable by other users")
    return path


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
