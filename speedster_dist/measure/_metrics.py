"""Metric drop between the original model's outputs and a candidate's.

``numeric_precision`` is Speedster's: per output, the mean over elements of
``|a - b| / (max(|a|, |b|) + 1e-5)``; the max over outputs; the mean over samples.
``accuracy`` compares argmax predictions with labels; its drop is original minus candidate.
A callable ``f(original_outputs, optimized_outputs, labels) -> float`` is taken as is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "BUILTIN_METRICS",
    "MetricFn",
    "accuracy_drop",
    "metric_drop",
    "numeric_precision_drop",
    "resolve_metric",
]

Outputs = Sequence[Any]  # one tuple of output arrays/tensors per sample
MetricFn = Callable[[Outputs, Outputs, Sequence[Any] | None], float]

_EPS = 1e-5


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def _relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"output shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    denom = np.maximum(np.abs(a), np.abs(b)) + _EPS
    diff = np.abs(a - b) / denom
    if not np.all(np.isfinite(diff)):
        return float("inf")
    return float(diff.mean())


def numeric_precision_drop(
    original: Outputs, optimized: Outputs, labels: Sequence[Any] | None = None
) -> float:
    """Speedster's numeric precision: mean over samples of the max over outputs."""
    if len(original) != len(optimized):
        raise ValueError("original and optimized outputs cover different numbers of samples")
    per_sample = []
    for orig, opt in zip(original, optimized, strict=True):
        if len(orig) != len(opt):
            raise ValueError(f"the candidate returned {len(opt)} outputs, the original {len(orig)}")
        per_sample.append(
            max(_relative_difference(_np(a), _np(b)) for a, b in zip(orig, opt, strict=True))
        )
    return float(np.mean(per_sample))


def _accuracy(outputs: Outputs, labels: Sequence[Any]) -> float:
    correct = 0
    total = 0
    for out, label in zip(outputs, labels, strict=True):
        pred = _np(out[0]).argmax(axis=-1).ravel()
        truth = _np(label).ravel()
        if pred.shape != truth.shape:
            raise ValueError(
                f"accuracy: {pred.size} predictions against {truth.size} labels per sample"
            )
        correct += int((pred == truth).sum())
        total += pred.size
    return correct / max(total, 1)


def accuracy_drop(original: Outputs, optimized: Outputs, labels: Sequence[Any] | None) -> float:
    """Accuracy of the original minus accuracy of the candidate (argmax of output 0)."""
    if labels is None or any(label is None for label in labels):
        raise ValueError('metric "accuracy" needs a label with every sample')
    return _accuracy(original, labels) - _accuracy(optimized, labels)


BUILTIN_METRICS: dict[str, MetricFn] = {
    "numeric_precision": numeric_precision_drop,
    "accuracy": accuracy_drop,
}


def resolve_metric(metric: str | MetricFn | None) -> MetricFn:
    """Turn the user's ``metric`` argument into a function; None means numeric precision."""
    if metric is None:
        return numeric_precision_drop
    if callable(metric):
        return metric
    if metric in BUILTIN_METRICS:
        return BUILTIN_METRICS[metric]
    raise ValueError(
        f"unknown metric {metric!r}; use one of {sorted(BUILTIN_METRICS)} or a callable"
    )


def metric_drop(
    metric: MetricFn, original: Outputs, optimized: Outputs, labels: Sequence[Any] | None
) -> float:
    """Apply ``metric`` and check it returned a real number."""
    value = float(metric(original, optimized, labels))
    if np.isnan(value):
        raise ValueError("the metric returned NaN")
    return value
