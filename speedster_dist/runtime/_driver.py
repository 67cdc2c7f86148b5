"""The driver: turns the search space into trials, hands them to an executor, keeps winners.

It owns the loop and nothing else: which candidate next comes from one searcher per hardware
type (ask/tell), where and how a trial runs is the executor's business. Every outcome is told
to its searcher and reported through ``on_result`` as soon as it arrives, so nothing already
measured is lost when something later fails. A search is a :class:`_Search`: begun, stepped
until over, finished (winners confirmed and fetched) into a :class:`SearchOutcome`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from speedster_dist.backends import saves_code
from speedster_dist.errors import InputError
from speedster_dist.records import (
    Candidate,
    Confirmation,
    HardwareType,
    SavedCandidate,
    SearchOutcome,
    TrialResult,
)
from speedster_dist.runtime._contenders import Contenders
from speedster_dist.runtime._frontier import LOAD_NOT_CONFIRMED, frontiers
from speedster_dist.runtime._protocol import Cluster, Executor, HardwareGroup, TrialOutcome
from speedster_dist.runtime._request import SearchRequest
from speedster_dist.search import BUDGET_EXHAUSTED, Searcher, derive_space, objective_value
from speedster_dist.serving import Objective

__all__ = ["BUDGET_EXHAUSTED", "SearchOutcome", "run_search"]


@dataclass
class _TypeState:
    group: HardwareGroup
    searcher: Searcher
    baseline: Candidate | None
    contenders: Contenders  # what its confirmation re-times
    planned: int = 0  # configs in its space: at most this many trials
    best: TrialOutcome | None = None
    best_data: TrialOutcome | None = None  # the best saved as data (loads without trust_code)
    announced: bool = False  # told to ``on_plan``


def _better(result: TrialResult, best: TrialOutcome | None, objective: Objective) -> bool:
    """Whether ``result`` (complete: feasible) beats ``best`` under ``objective``."""
    if best is None:
        return True
    mine, theirs = objective_value(result, objective), objective_value(best.result, objective)
    assert mine is not None and theirs is not None
    return mine < theirs


def _with_backoff_reason(item: TrialOutcome, searcher: object) -> TrialOutcome:
    """``item`` with, in its result's ``extra``, why its searcher proposed it as an accuracy
    back-off step (``backoff_after``), when it was one."""
    reason_of = getattr(searcher, "backoff_reason", None)  # a searcher may have no back-off
    why = reason_of(item.result.candidate) if reason_of is not None else ""
    if not why:
        return item
    extra = (*item.result.extra, ("backoff_after", why))
    return replace(item, result=replace(item.result, extra=extra))


def _state(group: HardwareGroup, request: SearchRequest) -> _TypeState:
    space = derive_space(group.catalog, group.hardware, request.settings)
    searcher = request.make_searcher(group.hardware, space)
    return _TypeState(
        group, searcher, space.baseline, Contenders(request.kept_contenders), space.size
    )


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


def run_search(executor: Executor, request: SearchRequest) -> SearchOutcome:
    """Run the search ``request`` describes on ``executor``, and keep each type's winner.

    When the budget runs out, the trials in flight are cancelled and told as FAILED with
    reason ``BUDGET_EXHAUSTED``; the winners are the best complete trials so far. The
    request's demand is held from before the first trial until after the confirmation, and
    released even when the search fails; the node groups that never came up are in
    ``outcome.missing_groups``.
    Raises InputError before any trial when the cluster has no hardware of ``devices``.
    """
    started = time.monotonic()
    request.demand.start()
    try:
        search = _Search.begin(executor, request, started)
        while search.step():
            pass
        return search.finish()
    finally:
        request.demand.release()  # also when the search fails: idle nodes must scale down


def _first_groups(view: Cluster, request: SearchRequest, deadline: float) -> list[HardwareGroup]:
    """The groups to start with; with every node still coming, wait for the first."""
    while True:
        groups = [g for g in view.discover() if g.hardware.device in request.devices]
        if groups or not request.demand.pending() or time.monotonic() >= deadline:
            return groups
        time.sleep(request.poll_s)


def _no_hardware(view: Cluster, request: SearchRequest) -> InputError:
    """Why nothing can be searched, and what to do: raised before any trial."""
    wanted = "/".join(sorted(d.value for d in request.devices))
    found = sorted({g.hardware.key for g in view.discover()})
    has = f"its hardware types: {', '.join(found)}" if found else "no node answered"
    return InputError(
        f"the cluster has no {wanted} node to optimize for ({has}). Give device=None (every "
        f"kind the cluster has) or a kind it has, or connect to a cluster with {wanted} "
        "nodes (cluster=<address>, or RAY_ADDRESS); on Ray, a node group started on demand "
        "is awaited group_wait seconds"
    )


@dataclass
class _Search:
    """A search under way: its hardware types, what it measured and kept so far."""

    executor: Executor
    request: SearchRequest
    view: Cluster  # the hardware types it sees
    started: float
    deadline: float
    states: dict[str, _TypeState] = field(default_factory=dict)
    hardware: dict[str, HardwareType] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    results: list[TrialResult] = field(default_factory=list)
    joined_late: list[str] = field(default_factory=list)
    portable: SavedCandidate | None = None
    budget_exhausted: bool = False

    @classmethod
    def begin(cls, executor: Executor, request: SearchRequest, started: float) -> _Search:
        """The types to search (InputError when there is none) and the payload shipped."""
        view = request.cluster if request.cluster is not None else executor
        search = cls(executor, request, view, started, started + request.budget.seconds)
        groups = _first_groups(view, request, search.deadline)
        if not groups:
            raise _no_hardware(view, request)
        search.adopt(groups)
        executor.prepare(request.payload)
        return search

    def adopt(self, groups: list[HardwareGroup]) -> None:
        for group in groups:
            key = group.hardware.key
            self.states[key] = _state(group, self.request)
            self.hardware[key] = group.hardware
            self.skipped[key] = _skipped_backends(group, self.request)

    def step(self) -> bool:
        """One turn of the loop: adopt joined types, submit what fits, collect outcomes
        (or cancel everything once the budget is over). False once the search is over."""
        self._adopt_joined()
        self._announce()
        _submit_ready(self.executor, self.states)
        idle = self.executor.in_flight() == 0
        if idle and not self.request.demand.pending():
            return False
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.budget_exhausted = True
            for item in self.executor.cancel_all(BUDGET_EXHAUSTED):
                self.record(item)
            return False
        wait_s = min(self.request.poll_s, remaining)
        if idle:  # nothing to run until an awaited node group joins
            time.sleep(wait_s)
            return True
        for item in self.executor.poll(wait_s):
            self.record(item)
        return True

    def record(self, item: TrialOutcome) -> None:
        """Tell an outcome to its searcher and the caller; keep what a winner needs."""
        state = self.states[item.result.candidate.hardware_key]
        item = _with_backoff_reason(item, state.searcher)
        state.searcher.tell(item.result)
        self.results.append(item.result)
        self.request.hooks.on_result(item.result)
        if not item.result.ok:
            return
        objective = self.request.settings.objective
        if _better(item.result, state.best, objective):
            state.best = item  # the previous best's files are released with its handle
        if not saves_code(item.result.candidate.backend) and _better(
            item.result, state.best_data, objective
        ):
            state.best_data = item
        state.contenders.keep(item)
        if item.result.is_baseline:
            self._keep_portable(item)

    def finish(self) -> SearchOutcome:
        """Confirm and fetch each type's winner; everything the search found, in one record."""
        lost = self.view.lost_types()
        confirmed, not_confirmed, confirm_s = self._confirm_winners(lost)
        winners, saved, no_winner = self._fetch_winners(lost)
        programs = tuple(k for k, r in winners.items() if saves_code(r.candidate.backend))
        data_only, data_saved = self._fetch_data_only(programs)
        return SearchOutcome(
            hardware=self.hardware,
            results=self.results,
            winners=winners,
            saved=saved,
            no_winner=no_winner,
            skipped=self.skipped,
            wall_s=time.monotonic() - self.started,
            budget_exhausted=self.budget_exhausted,
            portable=self.portable,
            lost=lost,
            joined_late=self.joined_late,
            confirmed=confirmed,
            not_confirmed=not_confirmed,
            confirm_s=confirm_s,
            missing_groups=self.request.demand.missing(),
            node_groups=self.executor.node_groups(),
            frontiers=frontiers(self.results),
            objective=self.request.settings.objective,
            data_only=data_only,
            data_only_saved=data_saved,
        )

    # -- the cluster changing under a search (nodes joining) ------------------------------

    def _adopt_joined(self) -> None:
        """A hardware type whose first node joined mid-search is searched too, from then on,
        with what is left of the budget (new nodes of known types the executor uses itself)."""
        new = [
            g
            for g in self.view.joined()
            if g.hardware.device in self.request.devices and g.hardware.key not in self.states
        ]
        self.adopt(new)
        self.joined_late.extend(g.hardware.key for g in new)

    def _announce(self) -> None:
        for key, state in self.states.items():
            if not state.announced:
                state.announced = True
                self.request.hooks.on_plan(key, state.planned)

    # -- keeping files -------------------------------------------------------------------

    def _keep_portable(self, item: TrialOutcome) -> None:
        """Keep a baseline's files as the learner's portable fallback (a CPU one preferred:
        it loads on any machine); a baseline whose files cannot be fetched is not kept."""
        if self.portable is not None and self.portable.device == "cpu":
            return
        try:
            saved = self.executor.fetch(item.artifact)
        except Exception:  # its node left with the files: another type's baseline may do
            return
        if self.portable is None or saved.device == "cpu":
            self.portable = saved

    def _fetch_winners(
        self, lost: dict[str, str]
    ) -> tuple[dict[str, TrialResult], dict[str, SavedCandidate], dict[str, str]]:
        """Each type's winner and its files, or why it has none."""
        winners: dict[str, TrialResult] = {}
        saved: dict[str, SavedCandidate] = {}
        no_winner: dict[str, str] = {}
        for key, state in self.states.items():
            best = state.best
            if best is None:
                no_winner[key] = lost.get(key) or _why_no_winner(self.results, key)
                continue
            try:
                saved[key] = self.executor.fetch(best.artifact)
            except Exception as exc:  # the node holding the files left before the fetch
                no_winner[key] = (
                    f"the winner ({best.result.candidate.label}) was measured, but its files "
                    f"were lost with its node: {type(exc).__name__}: {str(exc)[:200]}"
                )
                continue
            winners[key] = best.result
        return winners, saved, no_winner

    def _fetch_data_only(
        self, programs: tuple[str, ...]
    ) -> tuple[dict[str, TrialResult], dict[str, SavedCandidate]]:
        """For each type whose winner is a program, its fastest data-only candidate and
        files (kept beside the winner: a learner loaded without trust_code runs it)."""
        results: dict[str, TrialResult] = {}
        saved: dict[str, SavedCandidate] = {}
        for key in programs:
            best = self.states[key].best_data
            if best is None:
                continue
            try:
                saved[key] = self.executor.fetch(best.artifact)
            except Exception:  # its node left with the files: the portable fallback remains
                continue
            results[key] = best.result
        return results, saved

    # -- confirming the winners ------------------------------------------------------------

    def _confirm_winners(
        self, lost: dict[str, str]
    ) -> tuple[dict[str, Confirmation], dict[str, str], float]:
        """Re-time each type's contenders; the confirmed fastest becomes its winner. Any
        failure leaves the search's winner and says why."""
        rounds = self.request.confirm_rounds
        confirmed: dict[str, Confirmation] = {}
        not_confirmed: dict[str, str] = {}
        if rounds <= 0:
            return confirmed, not_confirmed, 0.0
        if self.request.settings.objective.serves_load:  # re-timing is one call at a time
            waived = {key: LOAD_NOT_CONFIRMED for key, state in self.states.items() if state.best}
            return confirmed, waived, 0.0
        began = time.monotonic()
        for key, state in self.states.items():
            if state.best is None:
                continue
            if key in lost:
                reason = f"its nodes left: {lost[key]}"
                confirmation = Confirmation(key, (), rounds, "", reason)
            else:
                confirmation = state.contenders.confirm(self.executor, state.group.hardware, rounds)
            if confirmation.reason:
                not_confirmed[key] = confirmation.reason
                continue
            confirmed[key] = confirmation
            state.best = state.contenders.winner(confirmation)
        return confirmed, not_confirmed, time.monotonic() - began


def _skipped_backends(group: HardwareGroup, request: SearchRequest) -> list[str]:
    """Backends that will not be tried on this hardware type, and why (never silent)."""
    lines = []
    source = request.settings.source_format
    for info in group.catalog:
        if info.capabilities and not any(source in c.sources for c in info.capabilities):
            continue  # never a candidate for this model (a forward pass, or generation)
        if info.name in request.settings.ignored_backends:
            lines.append(f"{info.name}: ignored by request")
        elif info.ignored_by(request.settings.ignored_backends):
            lines.append(f"{info.name}: ignored by request (it runs {', '.join(info.parts)})")
        elif info.unavailable is not None:
            lines.append(f"{info.name}: {info.unavailable}")
    return lines


def _why_no_winner(results: list[TrialResult], key: str) -> str:
    mine = [r for r in results if r.candidate.hardware_key == key]
    if not mine:
        return "no candidate could run on this hardware type"
    return f"all {len(mine)} trials failed or were rejected"
