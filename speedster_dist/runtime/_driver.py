"""The driver: turns the search space into trials, hands them to an executor, keeps winners.

It owns the loop and nothing else: which candidate next comes from one searcher per hardware
type (ask/tell), where and how a trial runs is the executor's business. Every outcome is told
to its searcher and reported through ``on_result`` as soon as it arrives, so nothing already
measured is lost when something later fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from speedster_dist.records import Candidate, DeviceKind, HardwareType, TrialResult
from speedster_dist.runtime._executors import Executor, HardwareGroup, TrialOutcome
from speedster_dist.runtime._trial import SavedCandidate, TrialPayload
from speedster_dist.search import (
    Budget,
    ExhaustiveSearcher,
    Searcher,
    SpaceSettings,
    derive_candidates,
)

__all__ = ["BUDGET_EXHAUSTED", "SearchOutcome", "run_search"]

BUDGET_EXHAUSTED = "cancelled: the optimization_time budget ran out while it was running"

SearcherFactory = Callable[[HardwareType, list[Candidate]], Searcher]


@dataclass
class SearchOutcome:
    """Everything a search measured, and the winner of each hardware type."""

    hardware: dict[str, HardwareType] = field(default_factory=dict)
    results: list[TrialResult] = field(default_factory=list)
    winners: dict[str, TrialResult] = field(default_factory=dict)
    saved: dict[str, SavedCandidate] = field(default_factory=dict)
    no_winner: dict[str, str] = field(default_factory=dict)  # hardware key -> why
    skipped: dict[str, list[str]] = field(default_factory=dict)  # key -> "backend: why" lines
    wall_s: float = 0.0
    budget_exhausted: bool = False

    def baseline(self, hardware_key: str) -> TrialResult | None:
        return next(
            (r for r in self.results if r.is_baseline and r.candidate.hardware_key == hardware_key),
            None,
        )


@dataclass
class _TypeState:
    group: HardwareGroup
    searcher: Searcher
    baseline: Candidate | None
    best: TrialOutcome | None = None


def _faster(result: TrialResult, best: TrialOutcome | None) -> bool:
    if best is None:
        return True
    assert result.latency is not None and best.result.latency is not None
    return result.latency.p50 < best.result.latency.p50


def _states(
    groups: list[HardwareGroup], settings: SpaceSettings, make_searcher: SearcherFactory
) -> dict[str, _TypeState]:
    states = {}
    for group in groups:
        candidates = derive_candidates(group.catalog, group.hardware, settings)
        baseline = next((c for c in candidates if c.backend == settings.baseline_backend), None)
        states[group.hardware.key] = _TypeState(
            group, make_searcher(group.hardware, candidates), baseline
        )
    return states


def _submit_ready(executor: Executor, states: dict[str, _TypeState]) -> None:
    for key, state in states.items():
        while executor.has_capacity(key):
            candidate = state.searcher.ask()
            if candidate is None:
                break
            executor.submit(candidate, state.group.hardware, candidate == state.baseline)


def run_search(
    executor: Executor,
    payload: TrialPayload,
    settings: SpaceSettings,
    budget: Budget,
    on_result: Callable[[TrialResult], Any] = lambda r: None,
    make_searcher: SearcherFactory = lambda hw, cands: ExhaustiveSearcher(cands),
    poll_s: float = 0.5,
    devices: frozenset[DeviceKind] = frozenset(DeviceKind),
) -> SearchOutcome:
    """Search every hardware type the executor discovers (of ``devices``), within ``budget``.

    Raises ValueError before any trial when the cluster has no hardware of ``devices``.
    """
    started = time.monotonic()
    deadline = started + budget.seconds
    groups = [g for g in executor.discover() if g.hardware.device in devices]
    if not groups:
        wanted = "/".join(sorted(d.value for d in devices))
        raise ValueError(f"the cluster has no {wanted} node to optimize for")
    states = _states(groups, settings, make_searcher)
    outcome = SearchOutcome(hardware={k: s.group.hardware for k, s in states.items()})
    outcome.skipped = {g.hardware.key: _skipped_backends(g, settings) for g in groups}
    executor.prepare(payload)

    def record(item: TrialOutcome) -> None:
        state = states[item.result.candidate.hardware_key]
        state.searcher.tell(item.result)
        outcome.results.append(item.result)
        on_result(item.result)
        if item.result.ok and _faster(item.result, state.best):
            state.best = item  # the previous best's files are released with its handle

    while True:
        _submit_ready(executor, states)
        if executor.in_flight() == 0:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            outcome.budget_exhausted = True
            for item in executor.cancel_all(BUDGET_EXHAUSTED):
                record(item)
            break
        for item in executor.poll(min(poll_s, remaining)):
            record(item)

    for key, state in states.items():
        if state.best is None:
            outcome.no_winner[key] = _why_no_winner(outcome.results, key)
            continue
        outcome.winners[key] = state.best.result
        outcome.saved[key] = executor.fetch(state.best.artifact)
    outcome.wall_s = time.monotonic() - started
    return outcome


def _skipped_backends(group: HardwareGroup, settings: SpaceSettings) -> list[str]:
    """Backends that will not be tried on this hardware type, and why (never silent)."""
    lines = []
    for info in group.catalog:
        if info.name in settings.ignored_backends:
            lines.append(f"{info.name}: ignored by request")
        elif info.unavailable is not None:
            lines.append(f"{info.name}: {info.unavailable}")
    return lines


def _why_no_winner(results: list[TrialResult], key: str) -> str:
    mine = [r for r in results if r.candidate.hardware_key == key]
    if not mine:
        return "no candidate could run on this hardware type"
    return f"all {len(mine)} trials failed or were rejected"
