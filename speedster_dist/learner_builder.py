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
from speedster_dist.records import SavedCandidate, SearchOutcome, TrialResult
from speedster_dist.serving import Objective

__all__ = [
    "data_only_entries",
    "generation_metrics",
    "learner_from_outcome",
    "operating_point",
    "winner_entries",
]


def _ms(seconds: float | None) -> float | None:
    return seconds * 1e3 if seconds is not None else None


def operating_point(result: TrialResult, objective: Objective) -> dict[str, Any]:
    """How ``result``'s candidate is served, as it was measured (the manifest's ``serving``):
    its load point under a throughput or cost objective, else one request per call, one
    call at a time (throughput 1 / p50)."""
    stats, latency, memory = result.throughput, result.latency, result.memory
    point: dict[str, Any] = {
        "objective": objective.kind,
        "knobs": result.candidate.knob_dict,
        "percentile": objective.percentile,
        "latency_budget_ms": objective.latency_budget_ms,
        "max_memory_mb": objective.max_memory_mb,
        "measured": True,
    }
    if stats is not None:
        point.update(
            batch_size=stats.point.batch_size,
            concurrency=stats.point.concurrency,
            throughput=stats.throughput,
            p50_ms=_ms(stats.p50_s),
            p99_ms=_ms(stats.p99_s),
            tail_ms=_ms(stats.tail_s),
            call_p50_ms=_ms(stats.call_p50_s),
            overlaps=stats.overlap.overlaps,
            mechanism=stats.overlap.mechanism,
        )
    elif latency is not None:
        point.update(
            batch_size=1,
            concurrency=1,
            throughput=1.0 / latency.p50 if latency.p50 > 0 else None,
            p50_ms=_ms(latency.p50),
            p99_ms=_ms(latency.p99),
        )
    if memory is not None:
        point.update(
            memory_mb=memory.candidate_mb,
            peak_rss_mb=memory.peak_rss_mb,
            peak_device_mb=memory.peak_device_mb,
        )
    return point


def generation_metrics(result: TrialResult, base: TrialResult | None) -> dict[str, Any]:
    """A generation winner's figures for the manifest (and its baseline's tokens/s)."""
    stats = result.generation
    assert stats is not None
    theirs = base.generation if base is not None else None
    return {
        "max_new_tokens": stats.new_tokens,
        "tokens_per_s": stats.tokens_per_s,
        "ttft_p50_s": stats.ttft_p50_s,
        "tpot_p50_s": stats.tpot_p50_s,
        "tpot_p99_s": stats.tpot_p99_s,
        "agreement": stats.agreement,
        "prefill_cosine": stats.cosine,
        "kv_cache_mb": stats.kv_cache_mb,
        "baseline_tokens_per_s": theirs.tokens_per_s if theirs is not None else None,
    }


def winner_entries(outcome: SearchOutcome) -> dict[str, WinnerEntry]:
    """One entry per hardware type with a winner: what it is, what it measured, its files."""
    return {
        key: _entry(outcome, key, result, outcome.saved[key])
        for key, result in outcome.winners.items()
    }


def data_only_entries(outcome: SearchOutcome) -> dict[str, WinnerEntry]:
    """Per hardware type whose winner is a program, its fastest data-only candidate: what a
    learner loaded without ``trust_code`` runs there (see :class:`HardwareKeyedLearner`)."""
    return {
        key: _entry(outcome, key, result, outcome.data_only_saved[key])
        for key, result in outcome.data_only.items()
        if key in outcome.data_only_saved
    }


def _entry(
    outcome: SearchOutcome, key: str, result: TrialResult, saved: SavedCandidate
) -> WinnerEntry:
    base = outcome.baseline(key)
    metrics: dict[str, Any] = {
        "latency_p50_s": result.latency.p50 if result.latency else None,
        "latency_p90_s": result.latency.p90 if result.latency else None,
        "latency_p99_s": result.latency.p99 if result.latency else None,
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
    if result.generation is not None:  # tokens/s, TTFT, TPOT, agreement (generation)
        metrics.update(generation_metrics(result, base))
    if key in outcome.node_groups:  # prices may be given per node group
        metrics["node_group"] = outcome.node_groups[key]
    c = result.candidate
    return WinnerEntry(
        outcome.hardware[key],
        c.backend,
        c.precision.value,
        c.technique,
        c.knob_dict,
        metrics,
        saved,
        operating_point(result, outcome.objective),
    )


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
    return HardwareKeyedLearner(
        io,
        entries,
        results=list(outcome.results),
        portable=fallback,
        data_only=data_only_entries(outcome),
    )
