"""Measure: how a candidate is timed and how its outputs are checked."""

from speedster_dist.measure._latency import MeasureSettings, latency_stats, measure_latency
from speedster_dist.measure._load import LOAD_KEYS, LoadWatch
from speedster_dist.measure._metrics import (
    BUILTIN_METRICS,
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
    "LOAD_KEYS",
    "LoadWatch",
    "MeasureSettings",
    "MetricFn",
    "accuracy_drop",
    "agreement_drop",
    "cosine_drop",
    "latency_stats",
    "measure_latency",
    "metric_drop",
    "numeric_precision_drop",
    "resolve_metric",
    "sample_masks",
]
