"""Which nodes hold which hardware types, and which of them may start a trial now.

The rule this module owns: at most one trial measures on a node at a time, except that a
node with several GPUs runs one GPU trial per GPU (never alongside a CPU trial, whose
measurement would share the host cores). A CPU trial reserves every CPU of its node; a GPU
trial one GPU and its share of the CPUs. Pure bookkeeping, no Ray: the executor asks it
where to go and tells it what finished, joined or left.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from speedster_dist.records import DeviceKind, HardwareType

__all__ = ["NodePool", "Reservation"]


@dataclass(frozen=True)
class Reservation:
    """The Ray resources a trial asks for on its node."""

    num_cpus: float
    num_gpus: int


@dataclass
class _Node:
    node_id: str
    devices: dict[str, DeviceKind]  # hardware key -> device kind, for the types this node has
    cpus: float
    gpus: int
    cpu_busy: bool = False
    gpus_busy: int = 0
    last_used: int = 0

    def free_slots(self, key: str) -> int:
        if self.cpu_busy or key not in self.devices:
            return 0
        if self.devices[key] is DeviceKind.GPU:
            return self.gpus - self.gpus_busy
        return 1 if self.gpus_busy == 0 else 0


@dataclass
class NodePool:
    """The nodes a search may use, grouped by hardware type, with what runs on each."""

    _nodes: dict[str, _Node] = field(default_factory=dict)
    _clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, node_id: str, hardware: Iterable[HardwareType], cpus: float, gpus: int) -> None:
        """Add (or replace) a node; a GPU type needs at least one GPU Ray can hand out."""
        devices = {h.key: h.device for h in hardware if h.device is DeviceKind.CPU or gpus > 0}
        self._nodes[node_id] = _Node(node_id, devices, cpus, gpus)

    def remove(self, node_id: str) -> list[str]:
        """Forget a node; return the hardware keys that have no node left."""
        node = self._nodes.pop(node_id, None)
        if node is None:
            return []
        return [key for key in node.devices if not self.nodes_of(key)]

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def node_ids(self) -> set[str]:
        return set(self._nodes)

    def hardware_keys(self) -> set[str]:
        return {key for node in self._nodes.values() for key in node.devices}

    def nodes_of(self, key: str) -> tuple[str, ...]:
        return tuple(n.node_id for n in self._nodes.values() if key in n.devices)

    def free_count(self, key: str) -> int:
        """How many trials of ``key`` could start now."""
        return sum(node.free_slots(key) for node in self._nodes.values())

    def free_node(self, key: str) -> str | None:
        """The free node of ``key`` used least recently (spreads trials over the type)."""
        free = [n for n in self._nodes.values() if n.free_slots(key) > 0]
        return min(free, key=lambda n: n.last_used).node_id if free else None

    def idle_node(self, key: str) -> str | None:
        """A node of ``key`` with nothing running at all (least recently used first)."""
        idle = [
            n
            for n in self._nodes.values()
            if key in n.devices and not n.cpu_busy and n.gpus_busy == 0
        ]
        return min(idle, key=lambda n: n.last_used).node_id if idle else None

    def acquire(self, node_id: str, key: str) -> Reservation:
        """Mark one slot of ``node_id`` busy for a trial of ``key``; what to reserve in Ray."""
        node = self._nodes[node_id]
        if node.free_slots(key) < 1:
            raise RuntimeError(f"node {node_id} has no free slot for hardware type {key}")
        node.last_used = next(self._clock)
        if node.devices[key] is DeviceKind.GPU:
            node.gpus_busy += 1
            return Reservation(node.cpus / node.gpus, 1)
        node.cpu_busy = True
        return Reservation(node.cpus, 0)

    def acquire_whole(self, node_id: str) -> Reservation:
        """Reserve a whole idle node (for work that is not a trial, e.g. a shared export)."""
        node = self._nodes[node_id]
        if node.cpu_busy or node.gpus_busy:
            raise RuntimeError(f"node {node_id} is busy")
        node.cpu_busy = True
        node.last_used = next(self._clock)
        return Reservation(node.cpus, 0)

    def release(self, node_id: str, key: str | None) -> None:
        """Free what :meth:`acquire` (``key``) or :meth:`acquire_whole` (None) took."""
        node = self._nodes.get(node_id)
        if node is None:  # the node left while the trial ran
            return
        if key is not None and node.devices.get(key) is DeviceKind.GPU:
            node.gpus_busy = max(0, node.gpus_busy - 1)
        else:
            node.cpu_busy = False
