"""What the driver needs from a place that runs trials, split in two questions.

:class:`Cluster`: which hardware types are there, and how that changes during a search.
:class:`TrialRunner`: run one trial on a node of a type, report it when finished.
An :class:`Executor` answers both: in-process (:class:`~.InlineExecutor`, unit tests) or on
Ray (:class:`~.RayExecutor`). The driver never touches Ray directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from speedster_dist.records import (
    BackendInfo,
    Candidate,
    HardwareType,
    SavedCandidate,
    TrialResult,
    TrialStatus,
)
from speedster_dist.runtime._trial import TrialPayload

__all__ = ["Cluster", "Executor", "HardwareGroup", "TrialOutcome", "TrialRunner", "failed_result"]


@dataclass(frozen=True)
class HardwareGroup:
    """A hardware type, the nodes that have it and the backend catalog measured on them."""

    hardware: HardwareType
    node_ids: tuple[str, ...]
    catalog: tuple[BackendInfo, ...]


@dataclass(frozen=True)
class TrialOutcome:
    """A finished trial; ``artifact`` is an opaque handle for :meth:`TrialRunner.fetch`."""

    result: TrialResult
    artifact: Any = None


class Cluster(Protocol):
    """The hardware types a search may use."""

    def discover(self) -> list[HardwareGroup]:
        """The hardware types available now, with their nodes and catalogs."""
        ...

    def joined(self) -> list[HardwareGroup]:
        """Hardware types that appeared since :meth:`discover` (or the last call)."""
        ...

    def lost_types(self) -> dict[str, str]:
        """Hardware types of which no node is left, and why."""
        ...


class TrialRunner(Protocol):
    """Runs trials, at most one measuring per node (or GPU) at a time."""

    def prepare(self, payload: TrialPayload) -> None:
        """Ship the payload once (the object store), before any submit."""
        ...

    def has_capacity(self, hardware_key: str) -> bool:
        """Whether a trial of ``hardware_key`` submitted now would start at once."""
        ...

    def submit(
        self,
        candidate: Candidate,
        hardware: HardwareType,
        is_baseline: bool,
        prune_above_s: float | None = None,
    ) -> None:
        """Start ``candidate`` on a free node of ``hardware`` (see ``run_trial`` for pruning)."""
        ...

    def poll(self, timeout_s: float) -> list[TrialOutcome]:
        """Trials that finished (or failed, or timed out) since the last poll."""
        ...

    def in_flight(self) -> int:
        """Trials submitted and not yet returned by :meth:`poll` or :meth:`cancel_all`."""
        ...

    def cancel_all(self, reason: str) -> list[TrialOutcome]:
        """Stop every running trial; each becomes a FAILED outcome with ``reason``."""
        ...

    def fetch(self, artifact: Any) -> SavedCandidate:
        """The saved files of a finished trial (the winner's, the baseline's)."""
        ...


class Executor(Cluster, TrialRunner, Protocol):
    """A cluster that runs trials."""


def failed_result(
    candidate: Candidate, reason: str, node_id: str = "", is_baseline: bool = False
) -> TrialResult:
    """A FAILED result the executor (not the trial) records: crash, loss, cancellation..."""
    return TrialResult(
        candidate, TrialStatus.FAILED, reason, node_id=node_id, is_baseline=is_baseline
    )
