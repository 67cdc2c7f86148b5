"""Keeping the history small: each partition's one-file-per-trial Parquet files merged into
one file, atomically, so that a compaction killed at any moment loses nothing and counts
nothing twice.

A partition (``date=.../hardware_type=.../``) is compacted in three steps:

1. its files are merged into a hidden temporary file (readers skip names starting with ``.``);
2. the temporary file is renamed to ``compacted-<token>.parquet`` (atomic): the commit. Its
   Parquet metadata lists the files it replaces;
3. the replaced files are deleted.

Between 2 and 3 both the merged file and (some of) its sources exist: :func:`live_files` (and
so :func:`read_history`) leaves out every file a committed merge replaces, and the next
compaction deletes them first. A kill before 2 leaves a hidden file that the next run removes.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["CompactionStats", "compact_history", "live_files"]

_PREFIX = "compacted-"
_REPLACES = b"speedster_dist.replaces"


@dataclass
class CompactionStats:
    partitions: int = 0  # partitions merged into one file this run
    files_merged: int = 0
    files_removed: int = 0  # replaced files deleted (this run's and an interrupted run's)


def _parquet_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith((".", "_")))


def _replaced_by(path: Path) -> set[str]:
    metadata = pq.read_schema(path).metadata or {}
    return set(json.loads(metadata.get(_REPLACES, b"[]")))


def _replaced(folder: Path) -> set[str]:
    replaced: set[str] = set()
    for merged in folder.glob(f"{_PREFIX}*.parquet"):
        replaced |= _replaced_by(merged)
    return replaced


def _partitions(root: Path) -> list[Path]:
    return sorted({p.parent for p in root.glob("date=*/hardware_type=*/*.parquet")})


def live_files(root: str | Path) -> list[str]:
    """Every Parquet file of the history that holds rows not held by another (the sources
    of a committed merge whose deletion was interrupted are left out)."""
    files: list[str] = []
    for folder in _partitions(Path(root)):
        replaced = _replaced(folder)
        files += [str(p) for p in _parquet_files(folder) if p.name not in replaced]
    return files


def _finish_interrupted(folder: Path, stats: CompactionStats) -> None:
    for stale in folder.glob(f".{_PREFIX}*.tmp"):  # a merge killed before its commit
        stale.unlink(missing_ok=True)
    for name in _replaced(folder):
        path = folder / name
        if path.exists():
            path.unlink()
            stats.files_removed += 1


def _compact_partition(
    folder: Path, stats: CompactionStats, step: Callable[[str, Path], None]
) -> None:
    _finish_interrupted(folder, stats)
    sources = _parquet_files(folder)
    if len(sources) < 2:
        return
    table = pa.concat_tables([pq.read_table(p) for p in sources], promote_options="default")
    names = [p.name for p in sources]
    metadata = {**(table.schema.metadata or {}), _REPLACES: json.dumps(names).encode()}
    table = table.replace_schema_metadata(metadata)
    final = folder / f"{_PREFIX}{uuid.uuid4().hex[:12]}.parquet"
    temporary = folder / f".{final.name}.tmp"
    pq.write_table(table, temporary)
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    step("written", temporary)
    os.replace(temporary, final)  # the commit: from now on the sources are replaced
    step("committed", final)
    for source in sources:
        source.unlink()
        stats.files_removed += 1
        step("removed", source)
    stats.partitions += 1
    stats.files_merged += len(sources)


def compact_history(
    root: str | Path, step: Callable[[str, Path], None] = lambda name, path: None
) -> CompactionStats:
    """Merge each partition of the history under ``root`` into one file (see the module);
    ``step(name, path)`` is called after each step (tests stop it there, as a kill would).

    Safe while trials are appended (a file written meanwhile stays for the next run); run
    one compaction at a time (the nightly job does, after its re-benchmarks)."""
    stats = CompactionStats()
    for folder in _partitions(Path(root)):
        _compact_partition(folder, stats, step)
    return stats
