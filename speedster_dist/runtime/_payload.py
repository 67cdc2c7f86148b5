"""What every trial of a search is given (:class:`TrialPayload`), and how a candidate's
outputs are judged against the original's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from speedster_dist.backends import SourceModel
from speedster_dist.measure import MeasureSettings, MetricFn, metric_drop, sample_masks
from speedster_dist.records import Candidate
from speedster_dist.serving import Objective

__all__ = ["FP32_TOLERANCE", "PRUNE_MIN_CALLS", "TrialPayload", "judge_outputs"]

# Full-precision candidates must match the original this closely (numeric precision or the
# user's metric), so that a broken conversion is rejected even when no drop is accepted.
FP32_TOLERANCE = 1e-3
# A trial is judged against its pruning bar once this many calls have been timed.
PRUNE_MIN_CALLS = 8


@dataclass(frozen=True, kw_only=True)
class TrialPayload:
    """Everything a trial needs; put in the object store once and shared by all trials.

    Built by ``prepare`` (held-in ``calibration`` and held-out ``validation`` samples, the
    original's outputs on the latter) and read by every trial: nothing changes it after.
    ``objective``: what the trial measures (one call at a time, or its candidate's load
    point) and the constraints it judges a measured point by.
    """

    source: SourceModel
    calibration: list[tuple[Any, ...]]
    validation: list[tuple[Any, ...]]
    reference_outputs: list[tuple[Any, ...]]
    labels: list[Any] | None = None  # one per validation sample, for the accuracy metric
    metric: MetricFn
    metric_drop_ths: float | None
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    objective: Objective = field(default_factory=Objective)
    # Generation (``source.task`` set): the original's greedy tokens on each held-out sample,
    # as ``generate()`` returned them; ``reference_outputs`` are then its prefill logits.
    reference_tokens: list[Any] | None = None


def judge_outputs(
    payload: TrialPayload,
    candidate: Candidate,
    samples: Sequence[tuple[Any, ...]],
    references: Sequence[tuple[Any, ...]],
    outputs: Sequence[tuple[Any, ...]],
    labels: Sequence[Any] | None,
) -> tuple[float, str]:
    """The metric drop of ``outputs`` (one tuple per sample of ``samples``) against
    ``references`` and, when over what ``candidate``'s precision may lose, why."""
    masks = sample_masks(payload.source.input_names, samples)
    drop = metric_drop(payload.metric, list(references), list(outputs), labels, masks)
    limit = max(payload.metric_drop_ths or 0.0, FP32_TOLERANCE)
    if candidate.precision.is_reduced:
        limit = payload.metric_drop_ths or 0.0
    if drop > limit:
        return drop, f"metric drop {drop:.4g} is over the accepted {limit:.4g}"
    return drop, ""
