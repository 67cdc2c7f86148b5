"""Metric drop between the original model's outputs and a candidate's.

``numeric_precision`` is Speedster's: per output, the mean over elements of
``|a - b| / (max(|a|, |b|) + 1e-5)``; the max over outputs; the mean over samples.
``accuracy`` compares argmax predictions with labels; its drop is original minus candidate.
``cosine`` and ``agreement`` need no labels (see their functions); both leave out positions whose
attention mask is 0 when the samples carry one (:func:`sample_masks`).
A callable ``f(original_outputs, optimized_outputs, labels) -> float`` is taken as is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "BUILTIN_METRICS",
    "DROP_BOUNDS",
    "MetricFn",
    "accuracy_drop",
    "agreement_drop",
    "cosine_drop",
    "metric_drop",
    "numeric_precision_drop",
    "resolve_metric",
    "sample_masks",
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


Masks = Sequence[Any | None]  # per sample: its attention mask, or None


def _rows(x: np.ndarray) -> np.ndarray:
    """``x`` as rows along its last axis (a scalar is one row of one value)."""
    return x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)


def _kept_rows(shape: tuple[int, ...], mask: Any | None) -> np.ndarray | None:
    """Which rows of an output of ``shape`` count: the mask applies to an output whose
    leading axes are the mask's (``[batch, seq, hidden]`` under ``[batch, seq]``); a pooled
    ``[batch, hidden]`` output or a mask-less sample keeps every row (None)."""
    if mask is None or len(shape) < 1:
        return None
    m = _np(mask)
    if tuple(shape[:-1]) != m.shape:
        return None
    return m.reshape(-1) != 0


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row pair. A zero row matches only a zero row (cosine 1);
    a zero row against a non-zero one scores 0, so an all-zero output never passes."""
    dot = np.einsum("ij,ij->i", a, b)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_zero = ~a.any(axis=1) & ~b.any(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), 0.0)
    return np.clip(np.where(both_zero, 1.0, cos), -1.0, 1.0)


def _check_pairs(original: Outputs, optimized: Outputs) -> None:
    if len(original) != len(optimized):
        raise ValueError("original and optimized outputs cover different numbers of samples")
    for orig, opt in zip(original, optimized, strict=True):
        if len(orig) != len(opt):
            raise ValueError(f"the candidate returned {len(opt)} outputs, the original {len(orig)}")


def cosine_drop(
    original: Outputs,
    optimized: Outputs,
    labels: Sequence[Any] | None = None,
    masks: Masks | None = None,
) -> float:
    """1 minus the lowest, over outputs, of the mean cosine similarity along the last axis.

    Per output, every row (token, or pooled vector) of every sample counts once, except rows
    whose attention mask is 0. The drop lies in [0, 2]; a candidate output holding NaN or
    infinity gives an infinite drop, which no threshold accepts.
    """
    _check_pairs(original, optimized)
    masks = masks if masks is not None else [None] * len(original)
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for orig, opt, mask in zip(original, optimized, masks, strict=True):
        for index, (a, b) in enumerate(zip(orig, opt, strict=True)):
            a64, b64 = _np(a).astype(np.float64), _np(b).astype(np.float64)
            if a64.shape != b64.shape:
                raise ValueError(f"output shapes differ: {a64.shape} vs {b64.shape}")
            if not np.all(np.isfinite(b64)):
                return float("inf")
            if a64.size == 0:
                continue
            ra, rb = _rows(a64), _rows(b64)
            keep = _kept_rows(a64.shape, mask)
            if keep is not None:
                ra, rb = ra[keep], rb[keep]
            sums[index] = sums.get(index, 0.0) + float(_row_cosines(ra, rb).sum())
            counts[index] = counts.get(index, 0) + len(ra)
    means = [sums[i] / counts[i] for i in sums if counts[i]]
    return float(1.0 - min(means)) if means else 0.0


def agreement_drop(
    original: Outputs,
    optimized: Outputs,
    labels: Sequence[Any] | None = None,
    masks: Masks | None = None,
) -> float:
    """1 minus the share of top-1 predictions (argmax over the last axis of output 0, as
    for ``accuracy``) that the candidate shares with the original; no labels needed.

    Per-token outputs (``[batch, seq, classes]``) leave out positions whose attention mask
    is 0. A prediction whose scores hold NaN or infinity counts as a disagreement.
    """
    _check_pairs(original, optimized)
    masks = masks if masks is not None else [None] * len(original)
    agree = total = 0
    for orig, opt, mask in zip(original, optimized, masks, strict=True):
        a, b = _np(orig[0]), _np(opt[0])
        if a.shape != b.shape:
            raise ValueError(f"output shapes differ: {a.shape} vs {b.shape}")
        if a.size == 0:
            continue
        ra, rb = _rows(a), _rows(b.astype(np.float64))
        same = (ra.argmax(axis=1) == rb.argmax(axis=1)) & np.isfinite(rb).all(axis=1)
        keep = _kept_rows(a.shape, mask)
        if keep is not None:
            same = same[keep]
        agree += int(same.sum())
        total += same.size
    return 1.0 - agree / total if total else 0.0


def sample_masks(input_names: Sequence[str], samples: Sequence[Sequence[Any]]) -> list[Any] | None:
    """Each sample's ``attention_mask`` input (by name), or None when the model takes none."""
    if "attention_mask" not in input_names:
        return None
    index = list(input_names).index("attention_mask")
    return [sample[index] if index < len(sample) else None for sample in samples]


BUILTIN_METRICS: dict[str, MetricFn] = {
    "numeric_precision": numeric_precision_drop,
    "accuracy": accuracy_drop,
    "cosine": cosine_drop,
    "agreement": agreement_drop,
}
# The largest drop each built-in metric reports for finite outputs (numeric precision's
# relative difference and cosine's 1 - cos stay below 2, accuracy and agreement below 1): a
# threshold at or above it would accept any candidate, so it is refused (options).
DROP_BOUNDS: dict[str, float] = {
    "numeric_precision": 2.0,
    "accuracy": 1.0,
    "cosine": 2.0,
    "agreement": 1.0,
}
# The built-in metrics that leave out masked positions; a user's callable keeps 3 arguments.
_MASK_AWARE: tuple[Callable[..., float], ...] = (cosine_drop, agreement_drop)


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
    metric: MetricFn,
    original: Outputs,
    optimized: Outputs,
    labels: Sequence[Any] | None,
    masks: Masks | None = None,
) -> float:
    """Apply ``metric`` (with the samples' attention ``masks`` when it is a built-in that
    uses them) and check it returned a real number."""
    if masks is not None and any(metric is fn for fn in _MASK_AWARE):
        value = float(metric(original, optimized, labels, masks))  # type: ignore[call-arg]
    else:
        value = float(metric(original, optimized, labels))
    if np.isnan(value):
        raise ValueError("the metric returned NaN")
    return value
