"""Accuracy back-off: a candidate rejected for its metric drop is tried again keeping more of
the model in higher precision, while that helps.

A backend declares, as data, which knob does that and in which order (``Knob.backoff``, e.g.
NNCF int8's ``fp_layers``: how many of the most sensitive MatMuls stay in float). When a
candidate with such a knob is REJECTED, the searchers propose the same candidate with the
knob's next value, first among what they propose, whether or not knobs are tuned; the driver
runs it while the budget lasts. Each step must close at least :data:`MIN_PROGRESS` of the
distance between the drop and the accepted drop, else the back-off stops: a drop that hardly
moves (int8 calibrated on a few distinct samples, where the error is spread over every layer)
would otherwise spend the budget on builds that are all rejected.
"""

from __future__ import annotations

from dataclasses import replace

from speedster_dist.records import Candidate, TrialResult, TrialStatus
from speedster_dist.search._space import SearchSpace

__all__ = ["MIN_PROGRESS", "AccuracyBackoff"]

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

    def after(self, result: TrialResult) -> Candidate | None:
        """The candidate to try after ``result``: its next back-off step when it was rejected
        for its metric drop and the previous step (if any) helped enough; else None."""
        drop = result.metric_drop
        if result.status is not TrialStatus.REJECTED or drop is None:
            return None
        before = self._came_from.get(result.candidate)
        if before is not None and not self._helped(before, drop):
            return None
        following = self.next_step(result.candidate)
        if following is None or following in self._proposed:
            return None
        self._proposed.add(following)
        self._came_from[following] = drop
        return following

    def next_step(self, candidate: Candidate) -> Candidate | None:
        """``candidate`` with its first back-off knob one step more accurate; None when it
        has no such knob or is at the last step."""
        key = f"{candidate.backend}/{candidate.precision.value}/{candidate.technique}"
        arm = self._space.arm(key)
        knobs = candidate.knob_dict
        for knob in arm.knobs if arm is not None else ():
            ladder = knob.backoff
            value = knobs.get(knob.name)
            if value not in ladder or ladder.index(value) + 1 >= len(ladder):
                continue
            knobs[knob.name] = ladder[ladder.index(value) + 1]
            return replace(candidate, knobs=tuple(sorted(knobs.items())))  # its load point kept
        return None

    def _helped(self, before: float, after: float) -> bool:
        accepted = self._space.metric_drop_ths or 0.0
        return before - after >= MIN_PROGRESS * max(before - accepted, 0.0) and after < before
