"""Accuracy back-off: a candidate rejected for its metric drop is tried again keeping more of
the model in higher precision, while the budget lasts.

A backend declares, as data, which knob does that and in which order (``Knob.backoff``, e.g.
NNCF int8's ``fp_layers``: how many of the most sensitive MatMuls stay in float). When a
candidate with such a knob is REJECTED, the searchers propose the same candidate with the
knob's next value, first among what they propose, whether or not knobs are tuned; the driver
runs it while the budget lasts. A step must close at least :data:`MIN_PROGRESS` of the
distance between the drop and the accepted drop to be followed by the next one; a step that
hardly helps (int8 calibrated on a few distinct samples, where the error is spread over every
layer) is followed by one last jump to the ladder's top (the most layers in float), not by
every step in between, which would spend the budget on builds that are all rejected.
Each proposed step has a reason (:meth:`AccuracyBackoff.reason`): the driver records it with
the step's result, as ``backoff_after`` in its ``extra``.

Load back-off (:func:`smaller_batch`): under a throughput or cost objective each arm's default
is served at its largest batch, which a tight latency budget may rule out; a default (or a
step of this back-off) over the budget is tried again at a smaller batch, same knobs and
calls in flight (the largest that would fit if latency were proportional to the batch), so
that every arm is measured where the budget may hold.
"""

from __future__ import annotations

from dataclasses import replace

from speedster_dist.records import Candidate, TrialResult, TrialStatus
from speedster_dist.search._objective import constraint_values
from speedster_dist.search._space import SearchSpace

__all__ = ["MIN_PROGRESS", "AccuracyBackoff", "smaller_batch"]

# The share of its excess over the accepted drop that a back-off step must remove for the next
# step to be tried. MiniLM int8 (docs/benchmarks.md): one more float MatMul took 128-token
# texts from 0.0055 to 0.0043; on five short texts 0.032 became 0.031 (not worth a build).
MIN_PROGRESS = 0.25


class AccuracyBackoff:
    """The back-off candidates of one search space (used by the searchers, see the module).

    ``after(result)`` is called with every result told; it returns the candidate to try next,
    or None. It never proposes a candidate twice.
    """

    def __init__(self, space: SearchSpace) -> None:
        self._space = space
        self._proposed: set[Candidate] = set()
        self._came_from: dict[Candidate, float] = {}  # back-off candidate -> drop before it
        self._why: dict[Candidate, str] = {}  # back-off candidate -> why it was proposed

    def after(self, result: TrialResult) -> Candidate | None:
        """The candidate to try after ``result``: its next back-off step when it was rejected
        for its metric drop (the ladder's last step when the previous step hardly helped, none
        after that jump); else None."""
        drop = result.metric_drop
        if result.status is not TrialStatus.REJECTED or drop is None:
            return None
        before = self._came_from.get(result.candidate)
        stalled = before is not None and not self._helped(before, drop)
        if stalled and self._why.get(result.candidate, "").startswith("the last step"):
            return None
        following = self.next_step(result.candidate, to_top=stalled)
        if following is None or following in self._proposed:
            return None
        self._proposed.add(following)
        self._came_from[following] = drop
        accepted = self._space.metric_drop_ths or 0.0
        why = f"{result.candidate.label} dropped {drop:.4g} (accepted {accepted:g})"
        self._why[following] = (
            f"the last step: {why}, and one more layer in float hardly helped"
            if stalled
            else f"{why}: more layers in higher precision"
        )
        return following

    def reason(self, candidate: Candidate) -> str:
        """Why ``candidate`` was proposed as a back-off step ("" if it was not one)."""
        return self._why.get(candidate, "")

    def next_step(self, candidate: Candidate, to_top: bool = False) -> Candidate | None:
        """``candidate`` with its first back-off knob one step more accurate (``to_top``: at
        its last step); None when it has no such knob or is at the last step."""
        key = f"{candidate.backend}/{candidate.precision.value}/{candidate.technique}"
        arm = self._space.arm(key)
        knobs = candidate.knob_dict
        for knob in arm.knobs if arm is not None else ():
            ladder = knob.backoff
            value = knobs.get(knob.name)
            if value not in ladder or ladder.index(value) + 1 >= len(ladder):
                continue
            knobs[knob.name] = ladder[-1] if to_top else ladder[ladder.index(value) + 1]
            return replace(candidate, knobs=tuple(sorted(knobs.items())))  # its load point kept
        return None

    def _helped(self, before: float, after: float) -> bool:
        accepted = self._space.metric_drop_ths or 0.0
        return before - after >= MIN_PROGRESS * max(before - accepted, 0.0) and after < before


def smaller_batch(result: TrialResult, space: SearchSpace) -> Candidate | None:
    """``result``'s config at a smaller batch of the objective (same knobs and calls in
    flight) when it was measured over the latency budget; None otherwise, or when it was at
    the smallest batch already.

    The batch is the largest whose latency, were it proportional to the batch, would be
    within the budget (a tail 8 times the budget at 32 requests a call: at most 4), else the
    smallest: a point far over the budget does not step through every batch in between."""
    point = result.candidate.load_point
    objective = space.objective
    budget = objective.latency_budget_ms
    if result.status is not TrialStatus.INFEASIBLE or point is None or budget is None:
        return None
    over_ms, _ = constraint_values(result, objective)
    smaller = [b for b in objective.batch_sizes if b < point.batch_size]
    if over_ms <= 0 or not smaller:
        return None
    fits = point.batch_size * budget / (budget + over_ms)
    batch = max((b for b in smaller if b <= fits), default=min(smaller))
    following = replace(result.candidate, batch_size=batch)
    return following if space.contains(following) else None
