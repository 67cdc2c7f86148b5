"""Executors run trials for the driver: in-process (unit tests) or as Ray tasks.

The driver never touches Ray directly: it submits candidates, polls for finished trials and
fetches the files of the winners. Ray owns placement and concurrency; this module owns the
rule that at most one trial measures on a node at a time, the per-trial time limit, and the
translation of a crashed or cancelled task into a FAILED result.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Protocol

from speedster_dist.records import Candidate, HardwareType, TrialResult, TrialStatus
from speedster_dist.runtime._catalog import NodeProbe, probe_node
from speedster_dist.runtime._hardware import HARDWARE_LABEL
from speedster_dist.runtime._trial import SavedCandidate, TrialPayload, run_trial
from speedster_dist.search import BackendInfo

__all__ = ["Executor", "HardwareGroup", "InlineExecutor", "RayExecutor", "TrialOutcome"]


@dataclass(frozen=True)
class HardwareGroup:
    """A hardware type, the nodes that have it and the backend catalog measured on them."""

    hardware: HardwareType
    node_ids: tuple[str, ...]
    catalog: tuple[BackendInfo, ...]


@dataclass(frozen=True)
class TrialOutcome:
    """A finished trial; ``artifact`` is an opaque handle for :meth:`Executor.fetch`."""

    result: TrialResult
    artifact: Any = None


class Executor(Protocol):
    """What the driver needs from a place that runs trials."""

    def discover(self) -> list[HardwareGroup]:
        """The hardware types available now, with their nodes and catalogs."""
        ...

    def prepare(self, payload: TrialPayload) -> None:
        """Ship the payload once (the object store), before any submit."""
        ...

    def has_capacity(self, hardware_key: str) -> bool: ...

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

    def in_flight(self) -> int: ...

    def cancel_all(self, reason: str) -> list[TrialOutcome]:
        """Stop every running trial; each becomes a FAILED outcome with ``reason``."""
        ...

    def fetch(self, artifact: Any) -> SavedCandidate: ...


def _failed(
    candidate: Candidate, reason: str, node_id: str = "", is_baseline: bool = False
) -> TrialResult:
    return TrialResult(
        candidate, TrialStatus.FAILED, reason, node_id=node_id, is_baseline=is_baseline
    )


class InlineExecutor:
    """Runs each trial in this process when polled: deterministic, for unit tests."""

    def __init__(self, probe: NodeProbe | None = None) -> None:
        self._probe = probe
        self._payload: TrialPayload | None = None
        self._queue: deque[tuple[Candidate, HardwareType, bool, float | None]] = deque()

    def discover(self) -> list[HardwareGroup]:
        probe = self._probe or probe_node("local")
        return [HardwareGroup(h, (probe.node_id,), probe.catalog(h.key)) for h in probe.hardware]

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
        result, saved = run_trial(self._payload, candidate, hardware, "local", is_baseline, bar)
        return [TrialOutcome(result, saved)]

    def in_flight(self) -> int:
        return len(self._queue)

    def cancel_all(self, reason: str) -> list[TrialOutcome]:
        outcomes = [TrialOutcome(_failed(c, reason, "local", b)) for c, _, b, _ in self._queue]
        self._queue.clear()
        return outcomes

    def fetch(self, artifact: Any) -> SavedCandidate:
        assert isinstance(artifact, SavedCandidate)
        return artifact


@dataclass
class _Running:
    candidate: Candidate
    node_id: str
    is_baseline: bool
    deadline: float
    artifact_ref: Any


class RayExecutor:
    """Runs each trial as a Ray task pinned to one free node of the trial's hardware type.

    A trial reserves every CPU of its node (and one GPU for GPU trials), so nothing else
    Ray schedules shares its cores while it measures. Tasks are never retried: a crash is an
    outcome. A trial past ``trial_timeout_s`` is force-cancelled and its node freed.
    """

    def __init__(self, trial_timeout_s: float = 900.0) -> None:
        import ray

        self._ray: Any = ray  # Ray's stubs do not type .options(num_returns=2) results
        self._timeout = trial_timeout_s
        self._payload_ref: Any = None
        self._running: dict[Any, _Running] = {}
        self._node_cpus: dict[str, float] = {}
        self._groups: dict[str, HardwareGroup] = {}

    # -- discovery -------------------------------------------------------------------
    def discover(self) -> list[HardwareGroup]:
        ray = self._ray
        alive = [
            n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0
        ]
        probes = {n["NodeID"]: self._probe_on(n) for n in alive}
        self._node_cpus = {n["NodeID"]: float(n["Resources"]["CPU"]) for n in alive}
        groups: dict[str, HardwareGroup] = {}
        for node in alive:
            probe = ray.get(probes[node["NodeID"]])
            for hardware in self._labelled(probe, node.get("Labels") or {}):
                group = groups.get(hardware.key)
                node_ids = (*group.node_ids, node["NodeID"]) if group else (node["NodeID"],)
                catalog = group.catalog if group else probe.catalog(_probe_key(probe, hardware))
                groups[hardware.key] = HardwareGroup(
                    group.hardware if group else hardware, node_ids, catalog
                )
        self._groups = groups
        return list(groups.values())

    def _probe_on(self, node: dict[str, Any]) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = self._ray.remote(num_cpus=0, max_retries=0)(probe_node)
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        return task.options(scheduling_strategy=strategy).remote(node["NodeID"])

    @staticmethod
    def _labelled(probe: NodeProbe, labels: dict[str, str]) -> list[HardwareType]:
        # A node started with the hardware-type label is that type, whatever it detects:
        # this is how a heterogeneous cluster is simulated on one machine.
        simulated = labels.get(HARDWARE_LABEL)
        if not simulated:
            return list(probe.hardware)
        return [replace(h, key=simulated) if h.device.value == "cpu" else h for h in probe.hardware]

    # -- running ---------------------------------------------------------------------
    def prepare(self, payload: TrialPayload) -> None:
        self._payload_ref = self._ray.put(payload)

    def _busy_nodes(self) -> set[str]:
        return {r.node_id for r in self._running.values()}

    def _free_node(self, hardware_key: str) -> str | None:
        group = self._groups.get(hardware_key)
        busy = self._busy_nodes()
        return next((n for n in group.node_ids if n not in busy), None) if group else None

    def has_capacity(self, hardware_key: str) -> bool:
        return self._free_node(hardware_key) is not None

    def submit(
        self,
        candidate: Candidate,
        hardware: HardwareType,
        is_baseline: bool,
        prune_above_s: float | None = None,
    ) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node_id = self._free_node(candidate.hardware_key)
        if node_id is None:
            raise RuntimeError(f"no free node of hardware type {candidate.hardware_key}")
        gpus = 1 if hardware.device.value == "gpu" else 0
        task = self._ray.remote(run_trial).options(
            num_cpus=self._node_cpus.get(node_id, 1),
            num_gpus=gpus,
            num_returns=2,
            max_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            name=f"trial:{candidate.label}",
        )
        result_ref, artifact_ref = task.remote(
            self._payload_ref, candidate, hardware, node_id, is_baseline, prune_above_s
        )
        deadline = time.monotonic() + self._timeout
        self._running[result_ref] = _Running(
            candidate, node_id, is_baseline, deadline, artifact_ref
        )

    def poll(self, timeout_s: float) -> list[TrialOutcome]:
        if not self._running:
            return []
        ready, _ = self._ray.wait(list(self._running), num_returns=1, timeout=timeout_s)
        outcomes = [self._collect(ref) for ref in ready]
        outcomes.extend(self._expire())
        return outcomes

    def _collect(self, ref: Any) -> TrialOutcome:
        running = self._running.pop(ref)
        try:
            result: TrialResult = self._ray.get(ref)
        except Exception as exc:  # worker crash, OOM kill, node death, cancellation
            reason = f"{type(exc).__name__}: {str(exc).strip()[-1500:]}"
            return TrialOutcome(
                _failed(running.candidate, reason, running.node_id, running.is_baseline)
            )
        return TrialOutcome(result, running.artifact_ref if result.ok else None)

    def _expire(self) -> list[TrialOutcome]:
        now = time.monotonic()
        late = [ref for ref, r in self._running.items() if r.deadline <= now]
        return [self._cancel(ref, f"timed out after {self._timeout:g} s") for ref in late]

    def _cancel(self, ref: Any, reason: str) -> TrialOutcome:
        running = self._running.pop(ref)
        self._ray.cancel(ref, force=True)
        return TrialOutcome(
            _failed(running.candidate, reason, running.node_id, running.is_baseline)
        )

    def in_flight(self) -> int:
        return len(self._running)

    def cancel_all(self, reason: str) -> list[TrialOutcome]:
        return [self._cancel(ref, reason) for ref in list(self._running)]

    def fetch(self, artifact: Any) -> SavedCandidate:
        saved: SavedCandidate = self._ray.get(artifact)
        return saved


def _probe_key(probe: NodeProbe, hardware: HardwareType) -> str:
    # The catalog was computed under the detected key; a simulated key maps back by device.
    keys = dict(probe.catalogs)
    if hardware.key in keys:
        return hardware.key
    return next(h.key for h in probe.hardware if h.device is hardware.device)
