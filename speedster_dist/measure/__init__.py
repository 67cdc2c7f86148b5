"""Measure: how a candidate is timed and how its outputs are checked."""

from speedster_dist.measure._batches import BatchError, batch_rows, tile_batch
from speedster_dist.measure._generation import (
    TOKEN_TIMED_RUNS,
    generation_stats,
    generation_timings,
    kv_cache_mb,
    sequence_agreement,
)
from speedster_dist.measure._gil import GilRelease, gil_release
from speedster_dist.measure._latency import MeasureSettings, latency_stats, measure_latency
from speedster_dist.measure._load import LOAD_KEYS, LoadWatch, overloaded
from speedster_dist.measure._loadgen import check_percentile, measure_load, request_latencies
from speedster_dist.measure._memory import MemoryWatch
from speedster_dist.measure._metrics import (
    BUILTIN_METRICS,
    DROP_BOUNDS,
    MetricFn,
    accuracy_drop,
    agreement_drop,
    cosine_drop,
    metric_drop,
    numeric_precision_drop,
    resolve_metric,
    sample_masks,
)

__all__ = [
    "BUILTIN_METRICS",
    "DROP_BOUNDS",
    "LOAD_KEYS",
    "TOKEN_TIMED_RUNS",
    "BatchError",
    "GilRelease",
    "LoadWatch",
    "MeasureSettings",
    "MemoryWatch",
    "MetricFn",
    "accuracy_drop",
    "agreement_drop",
    "batch_rows",
    "check_percentile",
    "cosine_drop",
    "generation_stats",
    "generation_timings",
    "gil_release",
    "kv_cache_mb",
    "latency_stats",
    "measure_latency",
    "measure_load",
    "metric_drop",
    "numeric_precision_drop",
    "overloaded",
    "request_latencies",
    "resolve_metric",
    "sample_masks",
    "sequence_agreement",
    "tile_batch",
]
