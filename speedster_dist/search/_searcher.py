"""What to try next: the ask/tell interface the driver uses, and the exhaustive searcher."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from speedster_dist.records import Candidate, HardwareType, TrialResult
from speedster_dist.search._backoff import AccuracyBackoff
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
    """Tries every candidate once, in the given order (the baseline first).

    Given a :class:`SearchSpace`, a candidate rejected for its metric drop is followed by its
    accuracy back-off (:mod:`._backoff`), which goes first among the candidates left.
    """

    def __init__(self, candidates: Iterable[Candidate]) -> None:
        self._pending = deque(candidates)
        self._asked: set[Candidate] = set()
        self._backoff = AccuracyBackoff(candidates) if isinstance(candidates, SearchSpace) else None
        self.results: list[TrialResult] = []

    def ask(self) -> Candidate | None:
        if not self._pending:
            return None
        candidate = self._pending.popleft()
        self._asked.add(candidate)
        return candidate

    def tell(self, result: TrialResult) -> None:
        self.results.append(result)
        following = self._backoff.after(result) if self._backoff is not None else None
        if following is not None and following not in self._asked:
            if following in self._pending:
                self._pending.remove(following)
            self._pending.appendleft(following)

    def finished(self) -> bool:
        return not self._pending

    def backoff_reason(self, candidate: Candidate) -> str:
        """Why ``candidate`` was proposed as an accuracy back-off step ("" if it was not)."""
        return self._backoff.reason(candidate) if self._backoff is not None else ""

    def prune_bar(self, candidate: Candidate) -> float | None:
        return None  # exhaustive means every candidate is timed in full
