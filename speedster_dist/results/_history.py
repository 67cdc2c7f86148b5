"""The trial history: a Hive-partitioned Parquet dataset that only ever grows.

Layout::

    HISTORY/date=2024-01-05/hardware_type=cpu-intel-xeon-avx512vnni-8c/
        20240105T021503-<run id>-<writer>-00007.parquet

Each finished trial is one small file, written to a hidden temporary name and renamed into
place, so a run killed at any moment leaves every finished trial readable and never a torn
file (readers skip names starting with ``.``). Existing files are never rewritten, so any
number of runs may append at once. Read it with :func:`read_history` or with plain pyarrow::

    pyarrow.dataset.dataset(HISTORY, format="parquet", partitioning="hive").to_table()
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from speedster_dist.naming import describe_model
from speedster_dist.records import Confirmation, TrialResult
from speedster_dist.results._schema import (
    HISTORY_SCHEMA,
    PARTITION_SCHEMA,
    TRIAL_SCHEMA,
    RunInfo,
    confirmed_row,
    new_run_id,
    trial_row,
)

logger = logging.getLogger(__name__)

__all__ = [
    "HistoryTarget",
    "HistoryWriter",
    "describe_model",
    "open_history",
    "read_history",
]


@dataclass(frozen=True)
class HistoryTarget:
    """Where (and as what) ``optimize_model(..., history=...)`` records its trials.

    A plain path is enough; the CLI uses this to name the model and the learner, to share a
    run id, or to watch trials as they are written (``on_trial``, called after each write).
    """

    root: Path
    run_id: str = ""
    kind: str = "optimize"
    model_name: str = ""
    learner: str = ""
    on_trial: Callable[[TrialResult], Any] | None = None


class HistoryWriter:
    """Appends the trials of one run to the history; safe to call from several threads."""

    def __init__(
        self,
        root: str | Path,
        run: RunInfo,
        on_write: Callable[[TrialResult], Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.run = run
        self.on_write = on_write  # called after each append (progress displays)
        self.written = 0
        self.failures = 0
        self._seq = itertools.count()
        self._token = uuid.uuid4().hex[:8]
        self._lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)

    def append(self, result: TrialResult, role: str | None = None) -> Path | None:
        """Write ``result`` now. Returns its file, or None (with a warning) if it could not.

        A full disk or a lost mount must not kill a search that is hours in: the trial stays
        in the learner's results and the failure is counted and announced.
        """
        role = role or ("baseline" if result.is_baseline else "candidate")
        written = self._write_or_warn(trial_row(result, self.run, role, _finished(result)))
        if self.on_write is not None:
            self.on_write(result)
        return written

    def append_confirmation(
        self,
        confirmation: Confirmation,
        trials: Sequence[TrialResult],
        when: datetime | None = None,
    ) -> list[Path]:
        """One row (role ``confirmed``) per contender of ``confirmation``: the baseline and
        each candidate re-timed side by side after the search, next to the trial of
        ``trials`` it confirms (same candidate, knobs, hardware type and run id), at ``when``
        (default: now, the confirmation's end).

        Not a trial: ``on_write`` is not called. A contender with no complete trial in
        ``trials`` (which the driver never confirms) is left out.
        """
        when = when or datetime.now(timezone.utc)
        written = []
        for entry in confirmation.entries:
            timed = [t for t in trials if t.ok and t.candidate == entry.candidate]
            if not timed:
                continue
            trial = min(timed, key=lambda t: t.latency.p50 if t.latency else float("inf"))
            path = self._write_or_warn(confirmed_row(trial, entry, confirmation, self.run, when))
            if path is not None:
                written.append(path)
        return written

    def _write_or_warn(self, row: dict[str, Any]) -> Path | None:
        try:
            return self._write(row)
        except OSError as exc:
            with self._lock:
                self.failures += 1
            what = "confirmation" if row["role"] == "confirmed" else "trial"
            warnings.warn(
                f"could not write a {what} to the history {self.root}: {exc}", stacklevel=3
            )
            return None

    def _write(self, row: dict[str, Any]) -> Path:
        folder = (
            self.root
            / f"date={row['date']}"
            / f"hardware_type={quote(str(row['hardware_type']), safe='')}"
        )
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            seq = next(self._seq)
        stamp = row["time"].strftime("%Y%m%dT%H%M%S")
        # The writer's token: writers of one run id (the learners of a rebench) never collide.
        final = folder / f"{stamp}-{self.run.run_id}-{self._token}-{seq:05d}.parquet"
        temporary = folder / f".{final.name}.tmp"
        table = pa.Table.from_pylist([row], schema=TRIAL_SCHEMA)
        pq.write_table(table, temporary)
        os.replace(temporary, final)  # atomic: readers see the whole file or nothing
        with self._lock:
            self.written += 1
        return final


def _finished(result: TrialResult) -> datetime:
    # The node's clock when the trial body ended, when the runtime recorded it.
    finished = float(getattr(result, "finished_at", 0.0) or 0.0)
    if finished > 0:
        return datetime.fromtimestamp(finished, tz=timezone.utc)
    return datetime.now(timezone.utc)


def _file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def open_history(
    target: str | Path | HistoryTarget,
    model: Any,
    fingerprint: str,
    batch_size: int,
    settings: Mapping[str, Any],
    quick: bool = False,
) -> HistoryWriter:
    """The writer ``optimize_model`` uses for ``history=target`` (called once per search);
    ``quick``: the run times candidates briefly (its rows are marked as noisy)."""
    if not isinstance(target, HistoryTarget):
        target = HistoryTarget(Path(target))
    if not fingerprint and isinstance(model, str | Path) and Path(model).is_file():
        fingerprint = _file_fingerprint(Path(model))  # an ONNX file: its bytes
    run = RunInfo(
        run_id=target.run_id or new_run_id(),
        kind=target.kind,
        model_name=target.model_name or describe_model(model),
        model_fingerprint=fingerprint,
        learner=target.learner,
        batch_size=batch_size,
        settings=settings,
        quick=quick,
    )
    return HistoryWriter(target.root, run, target.on_trial)


def _dataset(root: Path) -> ds.Dataset:
    from speedster_dist.results._compact import live_files

    partitioning = ds.partitioning(PARTITION_SCHEMA, flavor="hive")
    # The files that hold rows once (a compaction interrupted before its clean-up leaves
    # merged rows in two places: the merged file wins).
    return ds.dataset(
        live_files(root),
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=str(root),
        schema=HISTORY_SCHEMA,
    )


def read_history(root: str | Path, filter: ds.Expression | None = None) -> pa.Table:
    """Every trial recorded under ``root`` (oldest first), with the partition columns.

    Files written by older versions of the schema read with the missing columns as nulls.
    Raises FileNotFoundError when ``root`` does not exist.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"no trial history at {folder}")
    dataset = _dataset(folder)
    table = dataset.to_table(filter=filter)
    logger.info("read %d trials from %d files under %s", table.num_rows, len(dataset.files), folder)
    return table.sort_by([("time", "ascending"), ("run_id", "ascending")])
