"""Trials run in this process, one at a time when polled: deterministic, no Ray needed."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from speedster_dist.records import Candidate, Confirmation, HardwareType, SavedCandidate
from speedster_dist.runtime._catalog import NodeProbe, probe_node
from speedster_dist.runtime._confirm import confirm_task
from speedster_dist.runtime._protocol import Executor, HardwareGroup, TrialOutcome, failed_result
from speedster_dist.runtime._task import trial_task
from speedster_dist.runtime._trial import TrialPayload

__all__ = ["InlineExecutor"]


class InlineExecutor(Executor):
    """Runs each trial in this process when polled (unit tests, the GPU benchmark).

    ``probe`` replaces the probe of this machine (simulated hardware types). It confirms
    winners from this process, each contender built and timed in a fresh child process
    (:func:`confirm_task`); it has no node groups and asks no autoscaler for nodes.
    """

    def __init__(self, probe: NodeProbe | None = None) -> None:
        self._probe = probe
        self._payload: TrialPayload | None = None
        self._queue: deque[tuple[Candidate, HardwareType, bool, float | None]] = deque()

    def discover(self) -> list[HardwareGroup]:
        probe = self._probe or probe_node("local")
        return [HardwareGroup(h, (probe.node_id,), probe.catalog(h.key)) for h in probe.hardware]

    def joined(self) -> list[HardwareGroup]:
        return []

    def lost_types(self) -> dict[str, str]:
        return {}

    def prepare(self, payload: TrialPayload) -> None:
        self._payload = payload

    def has_capacity(self, hardware_key: str) -> bool:
        return not self._queue

    def submit(
        self,
        candidate: Candidate,
        hardware: HardwareType,
        is_baseline: bool,
        prune_above_s: float | None = None,
    ) -> None:
        self._queue.append((candidate, hardware, is_baseline, prune_above_s))

    def poll(self, timeout_s: float) -> list[TrialOutcome]:
        if not self._queue or self._payload is None:
            return []
        candidate, hardware, is_baseline, bar = self._queue.popleft()
        result, saved = trial_task(
            self._payload, None, candidate, hardware, "local", is_baseline, bar
        )
        return [TrialOutcome(result, saved)]

    def in_flight(self) -> int:
        return len(self._queue)

    def cancel_all(self, reason: str) -> list[TrialOutcome]:
        outcomes = [
            TrialOutcome(failed_result(c, reason, "local", b)) for c, _, b, _ in self._queue
        ]
        self._queue.clear()
        return outcomes

    def fetch(self, artifact: Any) -> SavedCandidate:
        assert isinstance(artifact, SavedCandidate)
        return artifact

    def confirm(
        self, hardware: HardwareType, contenders: Sequence[tuple[Candidate, bool]], rounds: int
    ) -> Confirmation:
        """Re-time ``contenders`` side by side, each in a child process (:func:`confirm_task`)."""
        assert self._payload is not None, "prepare() comes first"
        return confirm_task(self._payload, None, hardware, "local", tuple(contenders), rounds)
