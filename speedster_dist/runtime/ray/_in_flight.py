"""The Ray executor's records of a trial in flight: queued for a node, or running on one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from speedster_dist.records import Candidate, HardwareType

__all__ = ["QUEUE_LIMIT_FACTOR", "Queued", "Running"]


@dataclass(frozen=True)
class Queued:
    """A submitted trial waiting for a node (or for the shared export)."""

    candidate: Candidate
    hardware: HardwareType
    is_baseline: bool
    prune_above_s: float | None
    attempt: int = 1
    retry_note: str = ""

    @property
    def key(self) -> str:
        return self.candidate.hardware_key


@dataclass
class Running:
    """A trial task on its node, with the time it must finish by."""

    queued: Queued
    node_id: str
    deadline: float
    artifact_ref: Any
    mark: str = ""  # the task's start mark; "" once it is known to run (or without marks)


# A trial task still not running this many timeouts after submission is given up on (its
# node stays held by someone else's work).
QUEUE_LIMIT_FACTOR = 10.0
