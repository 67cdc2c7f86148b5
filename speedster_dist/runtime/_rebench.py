"""Re-measuring saved winners: fixed trials on chosen hardware types, through an executor.

The nightly ``speedster-dist rebench`` re-measures what a saved learner runs (each hardware
type's winner, rebuilt from the original model with the libraries installed today) and the
baseline next to it; a winner chosen for an operating point (a throughput or cost search) is
re-measured at that point, its baseline at the same point. Each measurement is an ordinary
trial: the same ``run_trial`` body, the same executor, placement and time limit as a search,
so a figure of the night is comparable with the figures of the search that chose the winner.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from speedster_dist.records import Candidate, HardwareType, TrialResult
from speedster_dist.runtime._protocol import Cluster, Executor, HardwareGroup, failed_result
from speedster_dist.runtime._trial import TrialPayload
from speedster_dist.search import SpaceSettings, derive_space

__all__ = [
    "FixedTrial",
    "OnlyTypes",
    "baseline_candidate",
    "operating_load",
    "run_fixed_trials",
    "winner_candidate",
]


@dataclass(frozen=True)
class FixedTrial:
    """One measurement to make: ``role`` is "winner" or "baseline" (as in the history)."""

    candidate: Candidate
    hardware: HardwareType
    role: str

    @property
    def is_baseline(self) -> bool:
        return self.role == "baseline"


def operating_load(entry: Mapping[str, Any]) -> tuple[int, int] | None:
    """(batch size, concurrency) of the operating point a manifest entry was chosen for by a
    throughput or cost search (its ``serving``), else None: one call at a time."""
    serving = entry.get("serving") or {}
    if serving.get("objective", "latency") == "latency":
        return None
    batch, flight = serving.get("batch_size"), serving.get("concurrency")
    if not isinstance(batch, int) or not isinstance(flight, int) or batch < 1 or flight < 1:
        return None
    return batch, flight


def winner_candidate(entry: Mapping[str, Any], hardware_key: str) -> Candidate:
    """The candidate a learner manifest entry was built from (backend, precision, knobs),
    at the operating point it was chosen for (:func:`operating_load`): a rebench then
    re-measures its throughput and per-request p99 there."""
    return Candidate.make(
        str(entry["backend"]),
        str(entry["precision"]),
        hardware_key,
        str(entry.get("technique", "")),
        dict(entry.get("knobs", {})),
        load=operating_load(entry),
    )


def baseline_candidate(
    group: HardwareGroup, settings: SpaceSettings, load: tuple[int, int] | None = None
) -> Candidate | None:
    """The baseline a search of ``group`` with ``settings`` times first (None: none runs),
    at ``load`` when given (the winner's operating point: side by side at the same load)."""
    base = derive_space(group.catalog, group.hardware, settings).baseline
    if base is None or load is None:
        return base
    return replace(base, batch_size=load[0], concurrency=load[1])


def _unplaceable(trial: FixedTrial) -> TrialResult:
    reason = f"no node of hardware type {trial.hardware.key} could take the trial"
    return failed_result(trial.candidate, reason, is_baseline=trial.is_baseline)


def run_fixed_trials(
    executor: Executor,
    payload: TrialPayload,
    trials: Iterable[FixedTrial],
    on_result: Callable[[FixedTrial, TrialResult], Any] = lambda t, r: None,
    poll_s: float = 0.5,
) -> list[tuple[FixedTrial, TrialResult]]:
    """Run every trial (each once, never pruned) and report each as soon as it finishes.

    The executor must have discovered the hardware types of ``trials``. Trials of different
    types run at the same time; the executor keeps one trial per node.
    """
    pending = list(trials)
    executor.prepare(payload)
    running: dict[tuple[Candidate, bool], FixedTrial] = {}
    done: list[tuple[FixedTrial, TrialResult]] = []

    def finish(trial: FixedTrial, result: TrialResult) -> None:
        done.append((trial, result))
        on_result(trial, result)

    while pending or running:
        for trial in list(pending):
            if executor.has_capacity(trial.hardware.key):
                pending.remove(trial)
                running[(trial.candidate, trial.is_baseline)] = trial
                executor.submit(trial.candidate, trial.hardware, trial.is_baseline)
        if not running:  # nothing could start and nothing runs: no node will free up
            for trial in pending:
                finish(trial, _unplaceable(trial))
            break
        for outcome in executor.poll(poll_s):
            trial = running.pop((outcome.result.candidate, outcome.result.is_baseline))
            finish(trial, outcome.result)
    return done


class OnlyTypes(Cluster):
    """A :class:`~._protocol.Cluster` that shows only some hardware types of another, so
    that a search covers just those (the nightly search of types that joined the fleet)."""

    def __init__(self, inner: Cluster, keys: Collection[str]) -> None:
        self.inner = inner
        self.keys = frozenset(keys)

    def discover(self) -> list[HardwareGroup]:
        return [g for g in self.inner.discover() if g.hardware.key in self.keys]

    def joined(self) -> list[HardwareGroup]:
        # A type that joins tonight is searched by the next night's run, with the others.
        return [g for g in self.inner.joined() if g.hardware.key in self.keys]

    def lost_types(self) -> dict[str, str]:
        return {k: v for k, v in self.inner.lost_types().items() if k in self.keys}

    def node_groups(self) -> dict[str, str]:
        return {k: v for k, v in self.inner.node_groups().items() if k in self.keys}
