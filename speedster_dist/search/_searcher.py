"""What to try next: the ask/tell interface the driver uses, and the exhaustive searcher."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Protocol

from speedster_dist.records import Candidate, TrialResult

__all__ = ["ExhaustiveSearcher", "Searcher"]


class Searcher(Protocol):
    """Proposes candidates for one hardware type and learns from their results.

    The driver owns concurrency: it may ``ask`` several times before any ``tell``, and it
    tells every outcome (complete, rejected, pruned, failed) exactly once.
    """

    def ask(self) -> Candidate | None:
        """The next candidate to try, or None when nothing more should be started now."""
        ...

    def tell(self, result: TrialResult) -> None: ...

    def finished(self) -> bool:
        """True when no candidate will ever be proposed again."""
        ...


class ExhaustiveSearcher:
    """Tries every candidate once, in the given order (the baseline first)."""

    def __init__(self, candidates: Iterable[Candidate]) -> None:
        self._pending = deque(candidates)
        self.results: list[TrialResult] = []

    def ask(self) -> Candidate | None:
        return self._pending.popleft() if self._pending else None

    def tell(self, result: TrialResult) -> None:
        self.results.append(result)

    def finished(self) -> bool:
        return not self._pending
