"""The driver: turns the search space into trials, hands them to an executor, keeps winners.

It owns the loop and nothing else: which candidate next comes from one searcher per hardware
type (ask/tell), where and how a trial runs is the executor's business. Every outcome is told
to its searcher and reported through ``on_result`` as soon as it arrives, so nothing already
measured is lost when something later fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from speedster_dist.records import (
    Candidate,
    Confirmation,
    DeviceKind,
    SavedCandidate,
    SearchOutcome,
    TrialResult,
)
from speedster_dist.runtime._demand import GroupDemand
from speedster_dist.runtime._protocol import Cluster, Executor, HardwareGroup, TrialOutcome
from speedster_dist.runtime._trial import TrialPayload
from speedster_dist.search import (
    BUDGET_EXHAUSTED,
    DEFAULT_CONFIRM_TOP,
    Budget,
    ExhaustiveSearcher,
    Searcher,
    SearcherFactory,
    SpaceSettings,
    derive_space,
)

__all__ = ["BUDGET_EXHAUSTED", "SearchOutcome", "run_search"]


@dataclass
class _TypeState:
    group: HardwareGroup
    searcher: Searcher
    baseline: Candidate | None
    planned: int = 0  # configs in its space: at most this many trials
    best: TrialOutcome | None = None
    announced: bool = False  # told to ``on_plan``
    # The fastest complete trials, fastest first, and the baseline's: the confirmation's
    # contenders; their files stay fetchable while they are held here.
    top: list[TrialOutcome] = field(default_factory=list)  # never the baseline
    base_item: TrialOutcome | None = None


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
        space = derive_space(group.catalog, group.hardware, settings)
        states[group.hardware.key] = _TypeState(
            group, make_searcher(group.hardware, space), space.baseline, space.size
        )
    return states


def _submit_ready(executor: Executor, states: dict[str, _TypeState]) -> None:
    for key, state in states.items():
        while executor.has_capacity(key):
            candidate = state.searcher.ask()
            if candidate is None:
                break
            is_baseline = candidate == state.baseline
            # The baseline is always timed in full: every speedup is relative to it.
            bar = None if is_baseline else state.searcher.prune_bar(candidate)
            executor.submit(candidate, state.group.hardware, is_baseline, bar)


def run_search(
    executor: Executor,
    payload: TrialPayload,
    settings: SpaceSettings,
    budget: Budget,
    on_result: Callable[[TrialResult], Any] = lambda r: None,
    make_searcher: SearcherFactory = lambda hw, space: ExhaustiveSearcher(space),
    poll_s: float = 0.5,
    devices: frozenset[DeviceKind] = frozenset(DeviceKind),
    cluster: Cluster | None = None,
    on_plan: Callable[[str, int], Any] = lambda key, planned: None,
    confirm_rounds: int = 0,
    confirm_top: int = DEFAULT_CONFIRM_TOP,
    demand: GroupDemand | None = None,
) -> SearchOutcome:
    """Search every hardware type the executor discovers (of ``devices``), within ``budget``.

    ``cluster`` (default: the executor) decides which hardware types the search sees, e.g.
    :class:`OnlyTypes` of the executor to search some of them only.
    ``make_searcher`` gives each hardware type its searcher over the space derived for it;
    every non-baseline trial is submitted with its searcher's ``prune_bar(candidate)``. When the
    budget runs out, the trials in flight are cancelled and told as FAILED with reason
    ``BUDGET_EXHAUSTED``; the winners are the best complete trials so far.
    ``on_plan(hardware_key, planned)`` is called once per hardware type before its first
    trial (a type that joins mid-search too), ``planned`` being the configs of its space.
    ``confirm_rounds`` > 0: after the search, the baseline and the ``confirm_top`` fastest
    candidates of each hardware type are re-timed side by side over that many rounds, through
    the executor's ``confirm`` (:mod:`~speedster_dist.runtime._confirm`); the confirmed
    fastest is the winner. A confirmation that fails keeps the search's figures and winner.
    ``demand`` asks the autoscaler for the declared node groups for the length of the
    search: the search goes on (idle if need be) until every group is up or its wait is
    over, and the groups that never came up are in ``outcome.missing_groups``.
    Raises ValueError before any trial when the cluster has no hardware of ``devices``.
    """
    started = time.monotonic()
    deadline = started + budget.seconds
    view: Cluster = cluster if cluster is not None else executor
    args = (payload, settings, deadline, on_result, make_searcher, poll_s, devices, demand)
    after = _After(on_plan, confirm_rounds, confirm_top if confirm_rounds > 0 else 0)
    if demand is None:
        return _search(executor, view, *args, started=started, after=after)
    demand.start()
    try:  # the demand holds the nodes through the confirmation too
        outcome = _search(executor, view, *args, started=started, after=after)
    finally:
        demand.release()  # also when the search fails: idle nodes must scale down
    return replace(outcome, missing_groups=demand.missing())


@dataclass(frozen=True)
class _After:
    """What the search tells and does besides trials: plans announced, winners confirmed."""

    on_plan: Callable[[str, int], Any]
    confirm_rounds: int
    confirm_top: int  # contenders kept per hardware type (0: no confirmation)


def _first_groups(
    view: Cluster,
    devices: frozenset[DeviceKind],
    demand: GroupDemand | None,
    poll_s: float,
    deadline: float,
) -> list[HardwareGroup]:
    """The groups to start with; with every node still coming, wait for the first."""
    while True:
        groups = [g for g in view.discover() if g.hardware.device in devices]
        if groups or demand is None or not demand.pending() or time.monotonic() >= deadline:
            return groups
        time.sleep(poll_s)


def _search(
    executor: Executor,
    view: Cluster,
    payload: TrialPayload,
    settings: SpaceSettings,
    deadline: float,
    on_result: Callable[[TrialResult], Any],
    make_searcher: SearcherFactory,
    poll_s: float,
    devices: frozenset[DeviceKind],
    demand: GroupDemand | None,
    *,
    started: float,
    after: _After,
) -> SearchOutcome:
    groups = _first_groups(view, devices, demand, poll_s, deadline)
    if not groups:
        wanted = "/".join(sorted(d.value for d in devices))
        raise ValueError(f"the cluster has no {wanted} node to optimize for")
    states = _states(groups, settings, make_searcher)
    outcome = SearchOutcome(  # frozen: its tables fill in place, its figures come at the end
        hardware={k: s.group.hardware for k, s in states.items()},
        skipped={g.hardware.key: _skipped_backends(g, settings) for g in groups},
    )
    portable: SavedCandidate | None = None
    exhausted = False
    confirm_s = 0.0
    executor.prepare(payload)

    def record(item: TrialOutcome) -> None:
        nonlocal portable
        state = states[item.result.candidate.hardware_key]
        state.searcher.tell(item.result)
        outcome.results.append(item.result)
        on_result(item.result)
        if item.result.ok and _faster(item.result, state.best):
            state.best = item  # the previous best's files are released with its handle
        if item.result.ok:
            _keep_top(state, item, after.confirm_top)
        if item.result.ok and item.result.is_baseline:
            portable = _keep_portable(portable, executor, item)

    while True:
        _adopt_joined(view, states, outcome, settings, make_searcher, devices)
        for key, state in states.items():
            if not state.announced:
                state.announced = True
                after.on_plan(key, state.planned)
        _submit_ready(executor, states)
        idle = executor.in_flight() == 0
        if idle and (demand is None or not demand.pending()):
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            exhausted = True
            for item in executor.cancel_all(BUDGET_EXHAUSTED):
                record(item)
            break
        if idle:  # nothing to run until an awaited node group joins
            time.sleep(min(poll_s, remaining))
            continue
        for item in executor.poll(min(poll_s, remaining)):
            record(item)

    outcome.lost.update(view.lost_types())
    if after.confirm_rounds > 0:
        confirm_started = time.monotonic()
        for state in states.values():
            if state.best is not None:
                _confirm(outcome, executor, state, after.confirm_rounds)
        confirm_s = time.monotonic() - confirm_started
    membership = getattr(executor, "membership", None)  # Ray: the node groups of the types
    outcome.node_groups.update(getattr(membership, "node_groups", {}))
    for key, state in states.items():
        if state.best is None:
            outcome.no_winner[key] = outcome.lost.get(key) or _why_no_winner(outcome.results, key)
            continue
        _keep_winner(outcome, executor, key, state.best)
    wall_s = time.monotonic() - started
    return replace(
        outcome, wall_s=wall_s, budget_exhausted=exhausted, portable=portable, confirm_s=confirm_s
    )


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


# -- the cluster changing under a search (nodes joining, leaving) ------------------------


def _adopt_joined(
    cluster: Cluster,
    states: dict[str, _TypeState],
    outcome: SearchOutcome,
    settings: SpaceSettings,
    make_searcher: SearcherFactory,
    devices: frozenset[DeviceKind],
) -> None:
    """A hardware type whose first node joined mid-search is searched too, from then on,
    with what is left of the budget (new nodes of known types the executor uses itself)."""
    new = [
        g for g in cluster.joined() if g.hardware.device in devices and g.hardware.key not in states
    ]
    if not new:
        return
    states.update(_states(new, settings, make_searcher))
    for group in new:
        outcome.hardware[group.hardware.key] = group.hardware
        outcome.skipped[group.hardware.key] = _skipped_backends(group, settings)
        outcome.joined_late.append(group.hardware.key)


def _keep_portable(
    kept: SavedCandidate | None, executor: Executor, item: TrialOutcome
) -> SavedCandidate | None:
    """The learner's portable fallback once a baseline completed: its files (a CPU one
    preferred: it loads on any machine) or ``kept``; a baseline whose files cannot be fetched
    is simply not kept."""
    if kept is not None and kept.device == "cpu":
        return kept
    try:
        saved = executor.fetch(item.artifact)
    except Exception:  # its node left with the files: another type's baseline may do
        return kept
    return saved if kept is None or saved.device == "cpu" else kept


def _keep_winner(outcome: SearchOutcome, executor: Executor, key: str, best: TrialOutcome) -> None:
    try:
        outcome.saved[key] = executor.fetch(best.artifact)
    except Exception as exc:  # the node holding the files left before they were fetched
        outcome.no_winner[key] = (
            f"the winner ({best.result.candidate.label}) was measured, but its files were "
            f"lost with its node: {type(exc).__name__}: {str(exc)[:200]}"
        )
        return
    outcome.winners[key] = best.result


# -- confirming the winners ----------------------------------------------------------------


def _p50(item: TrialOutcome) -> float:
    return item.result.latency.p50 if item.result.latency else float("inf")


def _keep_top(state: _TypeState, item: TrialOutcome, top: int) -> None:
    """Hold the baseline's and the ``top`` fastest candidates' outcomes (0: none)."""
    if top <= 0:
        return
    if item.result.is_baseline:
        state.base_item = item
        return
    others = [o for o in state.top if o.result.candidate != item.result.candidate]
    state.top = sorted([*others, item], key=_p50)[:top]


def _confirm(outcome: SearchOutcome, executor: Executor, state: _TypeState, rounds: int) -> None:
    """Re-time the baseline and the best candidates of one type; the confirmed fastest
    becomes the winner. Any failure leaves the search's winner and says why."""
    hardware = state.group.hardware
    key = hardware.key
    confirm = getattr(executor, "confirm", None)
    why = ""
    if confirm is None:
        why = "this executor cannot re-time candidates"
    elif key in outcome.lost:
        why = f"its nodes left: {outcome.lost[key]}"
    elif state.base_item is None:
        why = "the baseline did not complete"
    elif not state.top:
        why = "no candidate completed besides the baseline"
    if why:
        outcome.not_confirmed[key] = why
        return
    assert confirm is not None and state.base_item is not None
    contenders = [state.base_item, *state.top]
    pairs = [(o.result.candidate, o.result.is_baseline) for o in contenders]
    try:
        confirmation: Confirmation = confirm(hardware, pairs, rounds)
    except Exception as exc:  # the executor itself failed: the search's figures stand
        confirmation = Confirmation(key, (), rounds, "", f"{type(exc).__name__}: {exc}"[:500])
    if not confirmation.ok or any(confirmation.of(c) is None for c, _ in pairs):
        outcome.not_confirmed[key] = confirmation.reason or "not every contender was re-timed"
        return
    outcome.confirmed[key] = confirmation

    def confirmed_p50(item: TrialOutcome) -> float:
        entry = confirmation.of(item.result.candidate)
        return entry.p50 if entry is not None else float("inf")

    # A candidate whose confirmed figure is slower than another's loses its place.
    state.best = min(contenders, key=confirmed_p50)
