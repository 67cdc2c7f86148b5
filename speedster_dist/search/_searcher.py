"""What to try next: the ask/tell interface the driver uses, and the exhaustive searcher."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from speedster_dist.records import Candidate, HardwareType, TrialResult
from speedster_dist.search._space import SearchSpace

__all__ = ["ExhaustiveSearcher", "Searcher", "SearcherFactory"]


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

    def prune_bar(self, candidate: Candidate) -> float | None:
        """Latency (s) above which ``candidate``, submitted now, cannot win; None: time it all.

        The driver calls it right after ``ask`` returned ``candidate`` (never for the
        baseline) and passes it as ``prune_above_s``.
        """
        ...


# What the driver calls once per hardware type to get that type's searcher.
SearcherFactory = Callable[[HardwareType, SearchSpace], Searcher]


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

    def prune_bar(self, candidate: Candidate) -> float | None:
        return None  # exhaustive means every candidate is timed in full
