"""The JSON documents of the commands' ``--json`` (docs/cli.md, "Scriptable output").

Every document is one object with the same envelope: ``format`` (``speedster-dist.<command>``),
``version`` (:data:`FORMAT_VERSION`, raised when a field changes meaning or goes away; new
fields may appear within a version), ``command``, ``exit_code`` and ``error`` (null, or why
the command failed), then the command's own fields. A winner and a trial have one shape
wherever they appear (``optimize``, each job of a ``sweep``, the events a sweep's job
processes send): :func:`winner_json` and :func:`trial_json`. Latencies are in seconds, as in
the history.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from speedster_dist.artifacts import WinnerEntry
from speedster_dist.learner import HardwareKeyedLearner
from speedster_dist.records import Candidate, TrialResult

__all__ = [
    "FORMAT_VERSION",
    "document",
    "learner_json",
    "path_text",
    "trial_json",
    "winner_json",
]

FORMAT_VERSION = 1


def document(
    command: str, exit_code: int, body: Mapping[str, Any], error: str | None = None
) -> dict[str, Any]:
    """The envelope around ``body``: what every ``--json`` document starts with."""
    return {
        "format": f"speedster-dist.{command}",
        "version": FORMAT_VERSION,
        "command": command,
        "exit_code": exit_code,
        "error": error,
        **body,
    }


def path_text(path: Path | str | None) -> str | None:
    return None if path is None else str(path)


def _confirmed(metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    """The figures of the side-by-side re-timing after the search (docs/search.md)."""
    if metrics.get("confirmed_p50_s") is None:
        return None
    return {
        "latency_p50_s": metrics["confirmed_p50_s"],
        "baseline_p50_s": metrics.get("confirmed_baseline_p50_s"),
        "speedup": metrics.get("confirmed_speedup"),
        "speedup_range": [
            metrics.get("confirmed_speedup_low"),
            metrics.get("confirmed_speedup_high"),
        ],
        "rounds": metrics.get("confirm_rounds"),
    }


def winner_json(hardware_key: str, entry: WinnerEntry) -> dict[str, Any]:
    """The winner of one hardware type: what it is and what it measured. ``speedup`` is the
    confirmed one when the search re-timed its contenders, else p50 against the baseline's."""
    metrics = entry.metrics
    p50, base = metrics.get("latency_p50_s"), metrics.get("baseline_p50_s")
    # Its trial's label (with the knobs), so that a script finds the winner among the trials.
    candidate = Candidate.make(
        entry.backend, entry.precision, hardware_key, entry.technique, entry.knobs
    )
    confirmed = _confirmed(metrics)
    speedup = confirmed["speedup"] if confirmed else (base / p50 if p50 and base else None)
    return {
        "hardware_type": hardware_key,
        "device": entry.hardware.device.value,
        "backend": entry.backend,
        "precision": entry.precision,
        "technique": entry.technique,
        "knobs": dict(entry.knobs),
        "label": candidate.label,
        "latency_p50_s": p50,
        "latency_p90_s": metrics.get("latency_p90_s"),
        "baseline_p50_s": base,
        "speedup": speedup,
        "metric_drop": metrics.get("metric_drop"),
        "confirmed": confirmed,
        "node_group": metrics.get("node_group"),
    }


def trial_json(result: TrialResult) -> dict[str, Any]:
    """One trial: the candidate, how it ended and why, its figures (null when not timed)."""
    candidate, latency = result.candidate, result.latency
    return {
        "hardware_type": candidate.hardware_key,
        "backend": candidate.backend,
        "precision": candidate.precision.value,
        "technique": candidate.technique,
        "knobs": candidate.knob_dict,
        "label": candidate.label,
        "is_baseline": result.is_baseline,
        "status": result.status.value,
        "reason": result.reason,
        "latency_p50_s": latency.p50 if latency else None,
        "latency_p90_s": latency.p90 if latency else None,
        "metric_drop": result.metric_drop,
        "node_id": result.node_id,
    }


def learner_json(learner: HardwareKeyedLearner) -> dict[str, Any]:
    """The winners (one per hardware type) and every trial of the search behind ``learner``."""
    return {
        "winners": [winner_json(key, entry) for key, entry in learner.entries.items()],
        "trials": [trial_json(result) for result in learner.results],
    }
