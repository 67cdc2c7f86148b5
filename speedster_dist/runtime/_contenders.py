"""The contenders of a hardware type's confirmation: held during the search, re-timed after it.

During the search each hardware type keeps the outcome of its baseline and of its ``top``
fastest complete candidates (their files stay fetchable while held). After it, the executor
re-times them side by side (:func:`~._confirm.confirm_task` on Ray or in-process); the
confirmed fastest becomes the type's winner. A confirmation that cannot run, or fails, leaves
the search's winner and says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from speedster_dist.records import Candidate, Confirmation, HardwareType
from speedster_dist.runtime._protocol import TrialOutcome, TrialRunner

__all__ = ["Contenders"]


def _p50(item: TrialOutcome) -> float:
    return item.result.latency.p50 if item.result.latency else float("inf")


@dataclass
class Contenders:
    """The baseline's outcome and the ``top`` fastest candidates' (0: none kept), fastest
    first; the driver hands it every complete outcome of one hardware type."""

    top: int
    baseline: TrialOutcome | None = None
    fastest: list[TrialOutcome] = field(default_factory=list)  # never the baseline

    def keep(self, item: TrialOutcome) -> None:
        """Hold ``item`` if it is the baseline or among the ``top`` fastest so far."""
        if self.top <= 0:
            return
        if item.result.is_baseline:
            self.baseline = item
            return
        others = [o for o in self.fastest if o.result.candidate != item.result.candidate]
        self.fastest = sorted([*others, item], key=_p50)[: self.top]

    def _why_not(self) -> str:
        """Why there is nothing to confirm ("" when there is)."""
        if self.baseline is None:
            return "the baseline did not complete"
        if not self.fastest:
            return "no candidate completed besides the baseline"
        return ""

    def held(self) -> list[TrialOutcome]:
        """The baseline (if it completed), then the fastest candidates."""
        return [self.baseline, *self.fastest] if self.baseline is not None else self.fastest

    def pairs(self) -> list[tuple[Candidate, bool]]:
        return [(o.result.candidate, o.result.is_baseline) for o in self.held()]

    def confirm(self, runner: TrialRunner, hardware: HardwareType, rounds: int) -> Confirmation:
        """Re-time the contenders through ``runner.confirm``; a confirmation that is not
        usable (nothing to compare, the executor failed, a contender was not re-timed)
        carries the reason."""
        why = self._why_not()
        if why:
            return Confirmation(hardware.key, (), rounds, "", why)
        pairs = self.pairs()
        try:
            confirmation = runner.confirm(hardware, pairs, rounds)
        except Exception as exc:  # the executor itself failed: the search's figures stand
            reason = f"{type(exc).__name__}: {exc}"[:500]
            return Confirmation(hardware.key, (), rounds, "", reason)
        if confirmation.ok and all(confirmation.of(c) is not None for c, _ in pairs):
            return confirmation
        return replace(
            confirmation, reason=confirmation.reason or "not every contender was re-timed"
        )

    def winner(self, confirmation: Confirmation) -> TrialOutcome:
        """The contender confirmed fastest (a candidate confirmed slower than another loses
        its place, the baseline included)."""

        def confirmed_p50(item: TrialOutcome) -> float:
            entry = confirmation.of(item.result.candidate)
            return entry.p50 if entry is not None else float("inf")

        return min(self.held(), key=confirmed_p50)
