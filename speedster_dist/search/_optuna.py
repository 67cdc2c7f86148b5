"""Optuna over the conditional space of one hardware type, driven by the driver's ask/tell.

The study's parameters are ``arm`` (``backend/precision/technique``) and, conditional on it,
one categorical per knob of that arm's backend (``<backend>.<knob>``). Each arm's default
config is enqueued first (the baseline first) and timed in full; then a seeded TPE sampler
proposes configs, which the driver submits with a pruning bar (:meth:`prune_bar`). With a
history, the winners it holds for the same hardware type are enqueued right after the
baseline (a warm start), and the defaults follow in the space's best-first order.

What the study records: COMPLETE with the objective's value (seconds, minimised: one call's
p50 for the latency objective, seconds per request for throughput and cost, see
:mod:`._objective`); PRUNED with the running figure reported at step = timed calls; FAIL for
a failed or rejected candidate, with the reason and metric drop as user attributes. Under a
latency budget or a memory cap every measured trial carries its constraints (ms over the
budget, MB over the cap: Optuna's ``set_constraint``, or the sampler's ``constraints_func``
before Optuna 5), so that TPE learns where the feasible points are; an infeasible point is a
COMPLETE trial with positive constraints (user attribute ``status`` "infeasible").
A proposal already measured (or running) is told again with the earlier outcome, marked
``duplicate_of``, and never measured twice.
A candidate rejected for its metric drop is followed, first, by its accuracy back-off
(:mod:`._backoff`): enqueued in the study when the config is in the space, else (a step
beyond the knob's choices, or knobs not tuned) proposed and told outside the study. Under a
throughput or cost objective, a proposal that differs from a rejected config only in knobs
that serve load and its load point (``SearchSpace.outputs_key``) would compute the same
outputs: it is told rejected like it (``rejected_like``), never built. An enqueued config
measured over the latency budget is enqueued again at a smaller batch
(:func:`._backoff.smaller_batch`).
"""

from __future__ import annotations

import json
import warnings
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from speedster_dist.records import Candidate, HardwareType, TrialResult, TrialStatus
from speedster_dist.search._backoff import AccuracyBackoff, smaller_batch
from speedster_dist.search._budget import BUDGET_EXHAUSTED
from speedster_dist.search._objective import constraint_values, objective_value
from speedster_dist.search._params import decode, params, result_attrs, suggest
from speedster_dist.search._searcher import SearcherFactory
from speedster_dist.search._space import SearchSpace
from speedster_dist.search._storage import StudyStorage
from speedster_dist.search._study import open_study, study_name
from speedster_dist.serving import Objective

if TYPE_CHECKING:
    import optuna

__all__ = [
    "DEFAULT_SEED",
    "FILL_IN_AFTER",
    "MAX_CONSECUTIVE_DUPLICATES",
    "MIN_IMPROVEMENT",
    "PATIENCE",
    "PRUNE_MARGIN",
    "OptunaSearcher",
    "optuna_searcher_factory",
]

# The TPE sampler's seed: the same seed, space and outcomes give the same proposals.
DEFAULT_SEED = 0
# A trial is pruned once its running median is over the best p50 so far times this margin:
# 10% keeps measurement noise on a shared machine from stopping a config that ties the best.
PRUNE_MARGIN = 1.1
# The search ends when every config of the space has been measured, when the sampler proposes
# only configs already measured this many times in a row (it has converged)...
MAX_CONSECUTIVE_DUPLICATES = 30
# ...or when this many configs in a row, proposed by the sampler after the defaults, did not
# beat the best p50 of the session (None: no such limit)...
PATIENCE: int | None = 10
# ...by at least this fraction: a gain smaller than the run-to-run noise of a latency
# measurement (a few percent on a shared node) is a tie, and does not extend the search.
MIN_IMPROVEMENT = 0.02
# With a duplicate limit above the default, every this many duplicates in a row the first
# config not tried yet is proposed in the sampler's stead: each duplicate is a study trial the
# sampler reads at every later ask, so hundreds of them make a small space's search quadratic.
FILL_IN_AFTER = MAX_CONSECUTIVE_DUPLICATES

_MEASURED = (TrialStatus.COMPLETE, TrialStatus.INFEASIBLE)
_CONSTRAINTS = ("latency_budget_ms", "max_memory_mb")  # the order of the constraint values


@dataclass(frozen=True)
class _Told:
    """What the study already knows of one config (to answer a duplicate proposal)."""

    number: int
    state: str  # "complete" | "infeasible" | "pruned" | "fail"
    value: float | None = None
    step: int | None = None
    constraints: tuple[float, ...] = ()


def _stored_constraints(trial: Any) -> tuple[float, ...]:
    """Optuna 4's ``constraints_func``: the constraints a trial was told with."""
    return tuple(trial.user_attrs.get("constraints", (0.0,) * len(_CONSTRAINTS)))


def _sampler(seed: int, objective: Objective) -> optuna.samplers.BaseSampler:
    import optuna

    kwargs: dict[str, Any] = {}
    if objective.constrained and not hasattr(optuna.trial.Trial, "set_constraint"):
        kwargs["constraints_func"] = _stored_constraints  # before Optuna 5
    with warnings.catch_warnings():  # group=True is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, **kwargs)


def _told_state(trial: Any) -> str:
    """A stored trial's verdict: "complete", "infeasible", "pruned" or "fail"."""
    if trial.state.name == "COMPLETE":
        return "infeasible" if trial.user_attrs.get("status") == "infeasible" else "complete"
    return "pruned" if trial.state.name == "PRUNED" else "fail"


class OptunaSearcher:
    """A :class:`~speedster_dist.search.Searcher` backed by an Optuna study (ask/tell).

    Created by the driver's searcher factory, one per hardware type. ``storage`` and
    ``resume`` select the study (see :func:`open_study`); on resume, configs measured before
    are not measured again, except the baseline and the previous best, which are re-measured
    first: the baseline for a same-session speedup, the best because a winner needs its
    files and the driver keeps only files of trials measured in this session.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        storage: StudyStorage = None,
        name: str | None = None,
        resume: bool = False,
        seed: int = DEFAULT_SEED,
        prune_margin: float = PRUNE_MARGIN,
        max_duplicates: int = MAX_CONSECUTIVE_DUPLICATES,
        patience: int | None = PATIENCE,
        min_improvement: float = MIN_IMPROVEMENT,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        import optuna

        if prune_margin < 1.0 or max_duplicates < 1 or (patience is not None and patience < 1):
            raise ValueError("prune_margin must be >= 1, max_duplicates and patience >= 1")
        if not 0.0 <= min_improvement < 1.0:
            raise ValueError("min_improvement must be in [0, 1)")
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the driver prints progress
        self.space = space
        self._margin = prune_margin
        self._max_duplicates = max_duplicates
        self._patience = patience
        self._min_improvement = min_improvement
        self._objective = space.objective
        self._sampled: set[Candidate] = set()  # running configs the sampler proposed
        self._stale = 0  # sampled configs told in a row without a new best
        sampler = _sampler(seed, space.objective)
        self.study = open_study(
            name or f"search-{space.hardware_key}", storage, sampler, resume, attrs
        )
        self._running: dict[Candidate, optuna.Trial] = {}
        self._told: dict[Candidate, _Told] = {}
        self._fixed: deque[tuple[Candidate, bool]] = deque()  # (config, re-measure)
        self._backoff = AccuracyBackoff(space)
        self._outside: deque[Candidate] = deque()  # back-off steps the study cannot hold
        self._outside_running: set[Candidate] = set()
        self._rejected: dict[tuple[Any, ...], Candidate] = {}  # by outputs key
        self._duplicates = 0
        self._converged = False
        self._fill: deque[Candidate] = deque()  # untried configs proposed in the sampler's stead
        self._best: float | None = None  # the best feasible value of this session
        self.resumed = self._load()

    # -- the Searcher protocol ---------------------------------------------------------
    def ask(self) -> Candidate | None:
        """The next new config; None when finished or when only running ones are proposed."""
        if self._outside:
            candidate = self._outside.popleft()
            self._outside_running.add(candidate)
            return candidate
        while not self.finished():
            trial, fixed = self._next_trial()
            candidate = suggest(self.space, trial)
            remeasure = bool(trial.user_attrs.get("remeasure"))
            new = candidate not in self._running and (remeasure or candidate not in self._told)
            if new and not fixed and self._tell_rejected_like(trial, candidate):
                self._duplicates += 1
                self._converged = self._duplicates >= self._max_duplicates
                continue
            if new:
                self._running[candidate] = trial
                self._duplicates = 0
                if not fixed:
                    self._sampled.add(candidate)
                return candidate
            running = candidate in self._running
            self._tell_duplicate(trial, candidate)
            if running:
                return None  # a running config: ask again after the next result, do not count
            if not fixed:
                self._duplicates += 1
                self._converged = self._duplicates >= self._max_duplicates
                if not self._converged and self._duplicates % FILL_IN_AFTER == 0:
                    self._fill_in()
        return None

    def tell(self, result: TrialResult) -> None:
        """Record ``result`` in the study; the driver calls it once per asked candidate."""
        if result.candidate in self._outside_running:
            self._outside_running.discard(result.candidate)
            self._back_off(result)
            return
        trial = self._running.pop(result.candidate, None)
        if trial is None:
            raise ValueError(f"{result.candidate.label} was not asked or was told already")
        for key, value in result_attrs(result).items():
            trial.set_user_attr(key, value)
        told, improved = self._tell_study(trial, result)
        if result.reason != BUDGET_EXHAUSTED:
            self._told[result.candidate] = told
        if result.status is TrialStatus.REJECTED:
            self._rejected.setdefault(self.space.outputs_key(result.candidate), result.candidate)
        if result.candidate in self._sampled:
            self._sampled.discard(result.candidate)
            self._stale = 0 if improved else self._stale + 1
        else:  # an enqueued config (a default, a back-off step) over the latency budget
            smaller = smaller_batch(result, self.space)
            if smaller is not None and smaller not in self._told and smaller not in self._running:
                self._fixed.append((smaller, False))
        self._back_off(result)

    def _tell_study(self, trial: optuna.Trial, result: TrialResult) -> tuple[_Told, bool]:
        """Tell ``result``'s verdict (and, measured, its value and constraints); return what
        the study now knows of it and whether it beat the session's best."""
        from optuna.trial import TrialState

        value = objective_value(result, self._objective)
        latency = result.latency
        if result.status in _MEASURED and value is not None:
            constraints = self._constrain(trial, constraint_values(result, self._objective))
            self.study.tell(trial, value)
            if result.status is TrialStatus.INFEASIBLE:  # measured, never the best
                return _Told(trial.number, "infeasible", value, None, constraints), False
            best = self._best
            improved = best is None or value < best * (1.0 - self._min_improvement)
            self._best = min(value, best if best is not None else value)
            return _Told(trial.number, "complete", value, None, constraints), improved
        if result.status is TrialStatus.PRUNED and value is not None and latency is not None:
            trial.report(value, step=latency.count)
            self.study.tell(trial, state=TrialState.PRUNED)
            return _Told(trial.number, "pruned", value, latency.count), False
        # FAILED, REJECTED (never timed), or PRUNED without a figure
        self.study.tell(trial, state=TrialState.FAIL)
        return _Told(trial.number, "fail"), False

    def _constrain(self, trial: optuna.Trial, values: tuple[float, ...]) -> tuple[float, ...]:
        """Set ``values`` as ``trial``'s constraints (none without a constraint, or when a
        stored trial recorded none)."""
        if not self._objective.constrained or len(values) != len(_CONSTRAINTS):
            return ()
        trial.set_user_attr("constraints", list(values))
        if hasattr(trial, "set_constraint"):  # Optuna >= 5; before, the constraints_func
            for name, value in zip(_CONSTRAINTS, values, strict=True):
                trial.set_constraint(name, value)
        return values

    def _back_off(self, result: TrialResult) -> None:
        following = self._backoff.after(result)
        if following is None or following in self._told or following in self._running:
            return
        if self.space.contains(following):
            self._fixed.appendleft((following, False))
        else:
            self._outside.append(following)

    def _stalled(self) -> bool:
        return self._patience is not None and self._stale >= self._patience

    def backoff_reason(self, candidate: Candidate) -> str:
        """Why ``candidate`` was proposed as an accuracy back-off step ("" if it was not)."""
        return self._backoff.reason(candidate)

    def finished(self) -> bool:
        if self._fixed or self._outside:
            return False
        measured = len(self._told.keys() | self._running.keys())
        return self._converged or self._stalled() or measured >= self.space.size

    def prune_bar(self, candidate: Candidate) -> float | None:
        """The best feasible value measured in this session (p50, or seconds per request)
        times the margin, for configs the sampler proposed; None before any result and for
        the enqueued ones (defaults, re-measures), which are measured in full: one noisy
        8-call window must not write off a whole arm."""
        if self._best is None or candidate not in self._sampled:
            return None
        return self._best * self._margin

    # -- study <-> configs -------------------------------------------------------------
    def _next_trial(self) -> tuple[optuna.Trial, bool]:
        """A trial from the fixed queue (enqueued, then popped by ``ask``) or the sampler."""
        while self._fixed:
            candidate, remeasure = self._fixed.popleft()
            if candidate in self._running or (candidate in self._told and not remeasure):
                continue
            attrs = {"remeasure": True} if remeasure else None
            self.study.enqueue_trial(params(self.space, candidate), user_attrs=attrs)
            return self.study.ask(), True
        if self._fill:  # asked as the sampler's own proposal (pruned, counted for patience)
            self.study.enqueue_trial(params(self.space, self._fill.popleft()))
        return self.study.ask(), False

    def _fill_in(self) -> None:
        """Queue the first config of the space, in exhaustive order, not tried yet."""
        untried = (c for c in self.space.candidates() if c not in self._told)
        candidate = next((c for c in untried if c not in self._running), None)
        if candidate is not None:
            self._fill.append(candidate)

    def _tell_rejected_like(self, trial: optuna.Trial, candidate: Candidate) -> bool:
        """Tell ``candidate`` rejected, unbuilt, when a config with its outputs key was."""
        from optuna.trial import TrialState

        like = self._rejected.get(self.space.outputs_key(candidate))
        if like is None or like not in self._told:
            return False
        number = self._told[like].number
        trial.set_user_attr("duplicate_of", number)
        trial.set_user_attr("rejected_like", like.label)
        self.study.tell(trial, state=TrialState.FAIL)
        self._told[candidate] = _Told(number, "fail")
        return True

    def _tell_duplicate(self, trial: optuna.Trial, candidate: Candidate) -> None:
        from optuna.trial import TrialState

        known = self._told.get(candidate)
        if known is None:  # running: nothing to tell yet
            trial.set_user_attr("duplicate_of", self._running[candidate].number)
            self.study.tell(trial, state=TrialState.FAIL)
            return
        trial.set_user_attr("duplicate_of", known.number)
        if known.state in ("complete", "infeasible"):
            self._constrain(trial, known.constraints)
            self.study.tell(trial, known.value)
        elif known.state == "pruned" and known.value is not None:
            trial.report(known.value, step=known.step or 0)
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)

    # -- resume ------------------------------------------------------------------------
    def _load(self) -> int:
        """Learn what the stored study measured and queue what runs first.

        Returns how many configs are re-used from the study without being measured again.
        """
        from optuna.trial import TrialState

        self._close_stale()
        best: tuple[float, Candidate] | None = None
        finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        for trial in self.study.get_trials(deepcopy=False, states=finished):
            attrs = trial.user_attrs
            if "status" not in attrs or "duplicate_of" in attrs or attrs.get("retry"):
                continue  # interrupted, superseded, a duplicate or cancelled: not a verdict
            candidate = decode(self.space, trial.params)
            if candidate is None:
                continue  # no longer in this space (a backend became unavailable...)
            state = _told_state(trial)
            constraints = tuple(attrs.get("constraints", ()))
            told = _Told(trial.number, state, trial.value, trial.last_step, constraints)
            self._told[candidate] = told
            if attrs.get("status") == TrialStatus.REJECTED.value:
                self._rejected.setdefault(self.space.outputs_key(candidate), candidate)
            value = trial.value
            if state == "complete" and value is not None:
                best = min(best or (value, candidate), (value, candidate), key=lambda b: b[0])
        self._queue_first(best[1] if best else None)
        return len(self._told)

    def _close_stale(self) -> None:
        """Fail the trials an interrupted session left running or waiting."""
        from optuna.trial import TrialState

        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self.study.tell(trial.number, state=TrialState.FAIL)  # never told: interrupted
        waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        for _ in waiting:  # enqueued but never started: popped and closed, oldest first
            popped = self.study.ask()
            popped.set_user_attr("superseded", True)
            self.study.tell(popped, state=TrialState.FAIL)

    def _queue_first(self, previous_best: Candidate | None) -> None:
        """The baseline, the previous best (both re-measured when known), the history's
        winners on this hardware type (warm start), then each arm's default, best expected
        gain first."""
        first = [c for c in (self.space.baseline, previous_best) if c is not None]
        for candidate in dict.fromkeys(first):
            self._fixed.append((candidate, candidate in self._told))
        for candidate in (*self.space.warm_start, *self.space.defaults()):
            queued = {c for c, _ in self._fixed}
            if candidate not in self._told and candidate not in queued:
                self._fixed.append((candidate, False))


def optuna_searcher_factory(
    storage: StudyStorage,
    model_fingerprint: str,
    settings: Mapping[str, Any],
    *,
    model_name: str = "",
    resume: bool = False,
    seed: int = DEFAULT_SEED,
    prune_margin: float = PRUNE_MARGIN,
) -> SearcherFactory:
    """A ``SearcherFactory`` for the driver: one study per hardware type, named by
    :func:`study_name` after ``model_name`` (for people), the hardware key and a hash of the
    model fingerprint and ``settings`` (what makes it the same search)."""

    def make(hardware: HardwareType, space: SearchSpace) -> OptunaSearcher:
        identity = {"fingerprint": model_fingerprint, **settings}
        name = study_name(model_name, hardware.key, identity)
        attrs = {"model": model_name, "hardware": hardware.key, **identity}
        return OptunaSearcher(
            space,
            storage=storage,
            name=name,
            resume=resume,
            seed=seed,
            prune_margin=prune_margin,
            attrs=json.loads(json.dumps(attrs, default=str)),  # user attrs must be JSON
        )

    return make
