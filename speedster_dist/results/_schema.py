"""The Arrow schema of one trial record, and the conversion of a :class:`TrialResult` to a row.

One row per trial, whatever its outcome. Knobs, settings and library versions are JSON strings
so that the schema stays flat and any Parquet reader (pyarrow, DuckDB, Spark, pandas) reads it.
The two partition columns (``date``, ``hardware_type``) live in the directory names.
"""

from __future__ import annotations

import json
import platform
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from importlib import metadata
from typing import Any

import pyarrow as pa

from speedster_dist.records import Confirmation, ConfirmedLatency, TrialResult

__all__ = [
    "HISTORY_SCHEMA",
    "LOAD_COLUMNS",
    "PARTITION_SCHEMA",
    "ROLES",
    "RUN_KINDS",
    "SCHEMA_VERSION",
    "SERVING_COLUMNS",
    "TRIAL_SCHEMA",
    "RunInfo",
    "confirmed_row",
    "library_versions",
    "new_run_id",
    "trial_row",
]

# "2" added ``quick_measure`` and the machine load each trial saw (loadavg_*, steal_share,
# others_cpu_share); "3" the confirmation's columns (``confirm_*``, null on every other row);
# "4" the objective, the load point and its figures (``SERVING_COLUMNS``) and memory;
# "5" a generation trial's figures (``GENERATION_COLUMNS``, null on every other row).
# Files of an older version read with the new columns as nulls
# (``read_history`` reads every file with the current schema); a column is never removed or
# retyped, so any version's files read with any later one.
SCHEMA_VERSION = "5"
# The load columns, named as the trial's ``extra`` keys (speedster_dist.measure.LOAD_KEYS).
LOAD_COLUMNS = ("loadavg_before", "loadavg_after", "steal_share", "others_cpu_share")
_CONFIRM_COLUMNS = ("confirm_rounds", "confirm_low_s", "confirm_high_s", "confirm_round_p50s")
# The load point a row measured (null: one call at a time, the latency objective's way) and
# what it found; the candidate's peak memory (null where not measured).
SERVING_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("objective", pa.string()),  # "latency", "throughput" or "cost"
    ("load_batch_size", pa.int64()),  # requests per call
    ("concurrency", pa.int64()),  # calls in flight
    ("latency_percentile", pa.float64()),
    ("latency_tail_s", pa.float64()),  # the percentile-th per-request latency
    ("call_p50_s", pa.float64()),  # one call's median, submission to outputs
    ("max_in_flight", pa.int64()),
    ("overlaps", pa.bool_()),  # the runner's declaration (serving.Overlap)
    ("cores_used", pa.float64()),
    ("peak_rss_mb", pa.float64()),
    ("rss_delta_mb", pa.float64()),
    ("peak_device_mb", pa.float64()),
)
# A generation trial's figures (docs/generation.md; serving.GenerationStats).
GENERATION_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("max_new_tokens", pa.int64()),
    ("tokens_per_s", pa.float64()),
    ("ttft_p50_s", pa.float64()),  # time to first token (the prefill)
    ("tpot_p50_s", pa.float64()),  # time per output token after the first
    ("tpot_p99_s", pa.float64()),
    ("agreement", pa.float64()),  # greedy tokens identical to the original's
    ("prefill_cosine", pa.float64()),
    ("kv_cache_mb", pa.float64()),
)

# What a row is: a trial of a search ("candidate" or "baseline"), a re-measurement by the
# nightly rebench of a saved learner's "winner" or of its "baseline", or one contender of a
# search's confirmation ("confirmed": the baseline or a best candidate re-timed side by side
# after the search, in the search's run; not a trial, and not a nightly figure).
ROLES = ("candidate", "baseline", "winner", "confirmed")
RUN_KINDS = ("optimize", "sweep", "rebench")

# Columns stored inside each Parquet file.
TRIAL_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("run_kind", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("model_name", pa.string()),
        ("model_fingerprint", pa.string()),
        ("learner", pa.string()),
        ("role", pa.string()),
        ("node_id", pa.string()),
        ("backend", pa.string()),
        ("precision", pa.string()),
        ("technique", pa.string()),
        ("knobs", pa.string()),
        ("is_baseline", pa.bool_()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("latency_p50_s", pa.float64()),
        ("latency_p90_s", pa.float64()),
        ("latency_p99_s", pa.float64()),
        ("latency_mean_s", pa.float64()),
        ("latency_std_s", pa.float64()),
        ("latency_count", pa.int64()),
        # Inferences a second: measured at the row's load point where it has one
        # (``load_batch_size`` not null), else derived from the p50 (``batch_size / p50``,
        # one call at a time): readers must tell the two apart (speedster_dist.cost).
        ("throughput", pa.float64()),
        ("batch_size", pa.int64()),
        ("metric_drop", pa.float64()),
        ("build_s", pa.float64()),
        ("artifact_mb", pa.float64()),
        ("settings", pa.string()),
        ("versions", pa.string()),
        ("host", pa.string()),
        # True when the run timed candidates briefly (``--quick-measure``): noisy figures.
        ("quick_measure", pa.bool_()),
        *((name, pa.float64()) for name in LOAD_COLUMNS),
        # Role "confirmed" only (null elsewhere): the rounds of the side-by-side re-timing,
        # the lowest and highest round p50 (the row's p50 is the median of the rounds'), and
        # every round's p50 (a JSON list, in round order: the baseline's and a candidate's
        # rounds of one run pair up, which gives the speed-up's range).
        ("confirm_rounds", pa.int64()),
        ("confirm_low_s", pa.float64()),
        ("confirm_high_s", pa.float64()),
        ("confirm_round_p50s", pa.string()),
        *SERVING_COLUMNS,
        *GENERATION_COLUMNS,
    ],
    metadata={"speedster_dist.history_schema": SCHEMA_VERSION},
)

# Columns held by the directory layout: ``date=YYYY-MM-DD/hardware_type=<key>/``.
PARTITION_SCHEMA = pa.schema([("date", pa.string()), ("hardware_type", pa.string())])

HISTORY_SCHEMA = pa.schema(
    list(TRIAL_SCHEMA) + list(PARTITION_SCHEMA), metadata=TRIAL_SCHEMA.metadata
)

_DISTRIBUTIONS = (
    "speedster-dist",
    "torch",
    "transformers",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "tensorrt",
    "ray",
    "optuna",
    "numpy",
)


@cache
def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that decide how fast a candidate runs.

    Read from package metadata, so nothing heavy is imported; absent packages are left out.
    """
    found = {"python": platform.python_version()}
    for name in _DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: ``20240105T021500-1a2b3c4d``."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class RunInfo:
    """What every row of one run shares: who measured what, with which libraries."""

    run_id: str
    kind: str
    model_name: str
    model_fingerprint: str = ""
    learner: str = ""
    batch_size: int = 1
    settings: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=library_versions)
    host: str = field(default_factory=socket.gethostname)
    quick: bool = False  # latencies timed briefly (``--quick-measure``): noisy

    def __post_init__(self) -> None:
        if not self.run_id:
            raise ValueError("a run needs a run id")
        # It is part of each trial's file name: never a path of its own.
        if any(c in self.run_id for c in "/\\\0") or self.run_id.startswith("."):
            raise ValueError(
                f"a run id is part of file names: no '/', '\\' or leading '.', got {self.run_id!r}"
            )
        if self.kind not in RUN_KINDS:
            raise ValueError(f"run kind must be one of {RUN_KINDS}, got {self.kind!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


def _latency(result: TrialResult, name: str) -> float | None:
    return float(getattr(result.latency, name)) if result.latency is not None else None


def _load(recorded: Mapping[str, Any]) -> dict[str, float | None]:
    """The machine load recorded (None where it could not be measured)."""
    values = {name: recorded.get(name) for name in LOAD_COLUMNS}
    return {k: float(v) if isinstance(v, int | float) else None for k, v in values.items()}


def _serving(result: TrialResult, run: RunInfo) -> dict[str, Any]:
    """The objective, the load point and its figures, and memory (null where not measured)."""
    stats, memory = result.throughput, result.memory
    found: dict[str, Any] = dict.fromkeys(name for name, _ in SERVING_COLUMNS)
    # A row at a load point was measured for the run's load objective; any other row one
    # call at a time, as the latency objective measures (a rebench of a throughput learner
    # re-times its winners that way).
    loaded = result.candidate.load_point is not None
    found["objective"] = str(run.settings.get("objective", "latency")) if loaded else "latency"
    if stats is not None:
        found.update(
            load_batch_size=stats.point.batch_size,
            concurrency=stats.point.concurrency,
            latency_percentile=stats.percentile,
            latency_tail_s=stats.tail_s,
            call_p50_s=stats.call_p50_s,
            max_in_flight=stats.max_in_flight,
            overlaps=stats.overlap.overlaps,
            cores_used=stats.cores_used,
        )
    if memory is not None:
        found.update(
            peak_rss_mb=memory.peak_rss_mb,
            rss_delta_mb=memory.rss_delta_mb,
            peak_device_mb=memory.peak_device_mb,
        )
    return found


def _generation(result: TrialResult) -> dict[str, Any]:
    """A generation trial's figures (null for any other trial)."""
    stats = result.generation
    if stats is None:
        return dict.fromkeys(name for name, _ in GENERATION_COLUMNS)
    return {
        "max_new_tokens": stats.new_tokens,
        "tokens_per_s": stats.tokens_per_s,
        "ttft_p50_s": stats.ttft_p50_s,
        "tpot_p50_s": stats.tpot_p50_s,
        "tpot_p99_s": stats.tpot_p99_s,
        "agreement": stats.agreement,
        "prefill_cosine": stats.cosine,
        "kv_cache_mb": stats.kv_cache_mb,
    }


def _throughput(result: TrialResult, run: RunInfo, p50: float | None) -> float | None:
    """Inferences a second: a load point's measured rate (each request one sample of
    ``batch_size`` inferences), else derived from the p50 as calls of ``batch_size`` back
    to back (such a row has a null ``load_batch_size``: cost and reports say "derived")."""
    if result.throughput is not None:
        return result.throughput.throughput * run.batch_size
    return run.batch_size / p50 if p50 else None


def trial_row(result: TrialResult, run: RunInfo, role: str, when: datetime) -> dict[str, Any]:
    """The history row of ``result`` (partition columns included)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    c = result.candidate
    p50 = _latency(result, "p50")
    return {
        "run_id": run.run_id,
        "run_kind": run.kind,
        "time": when,
        "model_name": run.model_name,
        "model_fingerprint": run.model_fingerprint,
        "learner": run.learner,
        "role": role,
        "node_id": result.node_id,
        "backend": c.backend,
        "precision": c.precision.value,
        "technique": c.technique,
        "knobs": json.dumps(c.knob_dict, sort_keys=True, default=str),
        "is_baseline": result.is_baseline,
        "status": result.status.value,
        "reason": result.reason,
        "latency_p50_s": p50,
        "latency_p90_s": _latency(result, "p90"),
        "latency_p99_s": _latency(result, "p99"),
        "latency_mean_s": _latency(result, "mean"),
        "latency_std_s": _latency(result, "std"),
        "latency_count": result.latency.count if result.latency is not None else None,
        "throughput": _throughput(result, run, p50),
        "batch_size": run.batch_size,
        "metric_drop": result.metric_drop,
        "build_s": result.build_s,
        "artifact_mb": result.model_size_mb,
        "settings": json.dumps(dict(run.settings), sort_keys=True, default=str),
        "versions": json.dumps(dict(run.versions), sort_keys=True),
        "host": run.host,
        "quick_measure": run.quick,
        **_load(dict(result.extra)),
        **dict.fromkeys(_CONFIRM_COLUMNS),
        **_serving(result, run),
        **_generation(result),
        "date": when.astimezone(timezone.utc).strftime("%Y-%m-%d"),
        "hardware_type": c.hardware_key,
    }


def confirmed_row(
    trial: TrialResult,
    entry: ConfirmedLatency,
    confirmation: Confirmation,
    run: RunInfo,
    when: datetime,
) -> dict[str, Any]:
    """The history row of ``entry``, the confirmation of ``trial`` (same candidate, run and
    hardware type): its p50 is the confirmed one; the other latency figures, and the build
    time, are the trial's business (the confirmation does not measure them) and stay null."""
    row = trial_row(trial, run, "confirmed", when)
    p50 = entry.p50
    row.update(
        {
            "node_id": confirmation.node_id or trial.node_id,
            "status": "complete",
            "reason": "",
            "latency_p50_s": p50,
            **dict.fromkeys(
                (
                    "latency_p90_s",
                    "latency_p99_s",
                    "latency_mean_s",
                    "latency_std_s",
                    "latency_count",
                    "build_s",
                )
            ),
            "throughput": run.batch_size / p50,
            **_load(dict(confirmation.load)),  # what the machine load was while re-timing
            "confirm_rounds": len(entry.round_p50s),
            "confirm_low_s": entry.low,
            "confirm_high_s": entry.high,
            "confirm_round_p50s": json.dumps(list(entry.round_p50s)),
        }
    )
    return row
