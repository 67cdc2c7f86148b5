"""The learner builder: from what a search measured to the learner users get (for
``optimize_model`` and the nightly search of hardware types that joined).

It reads the search's :class:`~speedster_dist.records.SearchOutcome` and nothing of the
runtime: which machine measured what, and how, is already in the outcome."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from speedster_dist.artifacts import LearnerIO, WinnerEntry
from speedster_dist.learner import HardwareKeyedLearner
from speedster_dist.present import format_trials
from speedster_dist.records import SavedCandidate, SearchOutcome

__all__ = ["learner_from_outcome", "winner_entries"]


def winner_entries(outcome: SearchOutcome) -> dict[str, WinnerEntry]:
    """One entry per hardware type with a winner: what it is, what it measured, its files."""
    entries = {}
    for key, result in outcome.winners.items():
        base = outcome.baseline(key)
        metrics: dict[str, Any] = {
            "latency_p50_s": result.latency.p50 if result.latency else None,
            "latency_p90_s": result.latency.p90 if result.latency else None,
            "baseline_p50_s": base.latency.p50 if base and base.latency else None,
            "metric_drop": result.metric_drop,
            # built for the samples' shapes only (see TrialResult.fixed_shapes)
            "fixed_shapes": bool(result.fixed_shapes),
        }
        confirmation = outcome.confirmed.get(key)
        mine = confirmation.of(result.candidate) if confirmation else None
        speedup = confirmation.speedup(result.candidate) if confirmation else None
        if confirmation and mine and speedup and confirmation.baseline:
            metrics.update(  # re-timed side by side after the search (the summary's figures)
                confirmed_p50_s=mine.p50,
                confirmed_baseline_p50_s=confirmation.baseline.p50,
                confirmed_speedup=speedup[0],
                confirmed_speedup_low=speedup[1],
                confirmed_speedup_high=speedup[2],
                confirm_rounds=confirmation.rounds,
            )
        if key in outcome.node_groups:  # prices may be given per node group
            metrics["node_group"] = outcome.node_groups[key]
        c = result.candidate
        entries[key] = WinnerEntry(
            outcome.hardware[key],
            c.backend,
            c.precision.value,
            c.technique,
            c.knob_dict,
            metrics,
            outcome.saved[key],
        )
    return entries


def learner_from_outcome(
    outcome: SearchOutcome,
    io: LearnerIO,
    make_portable: Callable[[], SavedCandidate | None] | None = None,
) -> HardwareKeyedLearner:
    """The learner of a search; RuntimeError (with every trial) when nothing completed.

    Its portable fallback is what ``make_portable`` gives, called once a winner exists
    (``optimize_model``'s builds the model as ONNX for onnxruntime: data, loaded without
    ``trust_code``), else the eager baseline's files the search kept.
    """
    entries = winner_entries(outcome)
    if not entries:
        reasons = "; ".join(f"{k}: {v}" for k, v in outcome.no_winner.items())
        raise RuntimeError(
            f"no candidate completed on any hardware type ({reasons}).\n"
            + format_trials(outcome.results)
        )
    fallback = (make_portable() if make_portable is not None else None) or outcome.portable
    return HardwareKeyedLearner(io, entries, results=list(outcome.results), portable=fallback)
