"""What the driver needs from a place that runs trials, split in two questions.

:class:`Cluster`: which hardware types are there, and how that changes during a search.
:class:`TrialRunner`: run one trial on a node of a type, report it when finished.
An :class:`Executor` answers both: in-process (:class:`~.InlineExecutor`, unit tests) or on
Ray (:class:`~speedster_dist.runtime.ray.RayExecutor`). The driver never touches Ray directly.

Three capabilities are optional, declared here with defaults that do nothing: the node
groups of the hardware types (:meth:`Cluster.node_groups`), re-timing the winners
(:meth:`TrialRunner.confirm`) and asking an autoscaler for nodes
(:meth:`Executor.group_demand`, a :class:`Demand`). An executor states what it is by
subclassing :class:`Executor` and overrides only what it can do; the driver calls every
method unconditionally.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from speedster_dist.records import (
    BackendInfo,
    Candidate,
    Confirmation,
    HardwareType,
    SavedCandidate,
    TrialResult,
    TrialStatus,
)
from speedster_dist.runtime._trial import TrialPayload

__all__ = [
    "CANNOT_CONFIRM",
    "NO_DEMAND",
    "Cluster",
    "Demand",
    "Executor",
    "HardwareGroup",
    "NoDemand",
    "TrialOutcome",
    "TrialRunner",
    "failed_result",
]

# Why the winners of an executor without :meth:`TrialRunner.confirm` keep the search's figures.
CANNOT_CONFIRM = "this executor cannot re-time candidates"


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

    def node_groups(self) -> dict[str, str]:
        """Hardware key -> the node group (autoscaler worker group) its nodes belong to, read
        by the driver after the search for the summary's prices; default: none known."""
        return {}


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

    def confirm(
        self, hardware: HardwareType, contenders: Sequence[tuple[Candidate, bool]], rounds: int
    ) -> Confirmation:
        """Re-time ``contenders`` (candidate, is_baseline) side by side on one node of
        ``hardware`` after the search (see :func:`~speedster_dist.runtime.confirm_task`); a
        failure is the Confirmation's ``reason``. Default: not confirmed, the search's figures
        stand."""
        return Confirmation(hardware.key, (), rounds, "", CANNOT_CONFIRM)


class Demand(Protocol):
    """Nodes asked of an autoscaler for the length of a search; the driver starts it before
    the first trial, waits while it is :meth:`pending` and releases it at the end."""

    def start(self) -> None:
        """Ask for the nodes (a failure is reported by :meth:`missing`, never raised)."""
        ...

    def release(self) -> None:
        """Withdraw the request, so that idle nodes scale down."""
        ...

    def pending(self) -> bool:
        """Whether some asked-for node is still awaited (the search idles for it)."""
        ...

    def missing(self) -> dict[str, str]:
        """Each node group that never came up, and why."""
        ...


class NoDemand(Demand):
    """Nothing asked, nothing awaited: the demand of an executor without node groups."""

    def start(self) -> None:
        return None

    def release(self) -> None:
        return None

    def pending(self) -> bool:
        return False

    def missing(self) -> dict[str, str]:
        return {}


NO_DEMAND = NoDemand()


class Executor(Cluster, TrialRunner, Protocol):
    """A cluster that runs trials."""

    def group_demand(self, node_groups: Sequence[str] | str | None, wait_s: float) -> Demand:
        """The demand for ``node_groups`` (names, or a cluster YAML; None: the groups the
        cluster declares), each awaited ``wait_s`` seconds. Default: :data:`NO_DEMAND`."""
        return NO_DEMAND


def failed_result(
    candidate: Candidate, reason: str, node_id: str = "", is_baseline: bool = False
) -> TrialResult:
    """A FAILED result the executor (not the trial) records: crash, loss, cancellation..."""
    return TrialResult(
        candidate, TrialStatus.FAILED, reason, node_id=node_id, is_baseline=is_baseline
    )
