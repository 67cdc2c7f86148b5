"""The nodes of a search as the cluster changes: probed on arrival, dropped on departure.

Every alive node is probed once (a zero-CPU task pinned to it returns its hardware types and
each backend's availability there); its types join the :class:`NodePool`. Between trials the
node list is refreshed at most every ``refresh_s`` seconds: nodes that joined are probed
(without waiting), nodes that left are dropped, and a hardware type left without any node is
recorded as lost with the reason.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from speedster_dist.hardware import with_node_labels
from speedster_dist.records import HardwareType
from speedster_dist.runtime._catalog import NodeProbe, probe_node
from speedster_dist.runtime._node_groups import GROUP_LABEL
from speedster_dist.runtime._protocol import HardwareGroup
from speedster_dist.runtime.ray._node_pool import NodePool

__all__ = ["ClusterMembership"]

logger = logging.getLogger(__name__)

# (node id, runtime env) -> probe. A node's probe holds while its raylet lives (a restarted
# node has a new id) and its runtime environment is the same: searches of a process share it.
_PROBE_CACHE: dict[tuple[str, str], NodeProbe] = {}


class ClusterMembership:
    """The :class:`~.Cluster` half of the Ray executor, and the node pool it places on.

    ``ray`` is the ``ray`` module (or a stand-in in tests, with its own probe cache);
    ``task_options`` go to every task (the runtime environment); ``affinity(node_id)`` pins a
    task to a node.
    """

    def __init__(
        self,
        ray: Any,
        affinity: Any,
        task_options: dict[str, Any],
        env_key: str,
        *,
        shared_cache: bool,
        refresh_s: float,
        probe_timeout_s: float,
        stats: Counter[str],
    ) -> None:
        self._ray = ray
        self._affinity = affinity
        self._task_options = task_options
        self._env_key = env_key
        self._probe_cache = _PROBE_CACHE if shared_cache else {}
        self._refresh_s = refresh_s
        self._probe_timeout_s = probe_timeout_s
        self.stats = stats
        self._probe_fn: Any = ray.remote(probe_node)
        self.pool = NodePool()
        self._groups: dict[str, HardwareGroup] = {}
        self._joined: list[HardwareGroup] = []
        self._lost: dict[str, str] = {}
        self._dead: set[str] = set()
        self._unprobeable: set[str] = set()
        self._probes: dict[Any, dict[str, Any]] = {}
        self._last_refresh = -math.inf
        self.node_groups: dict[str, str] = {}  # hardware key -> node group (its label)

    # -- the Cluster protocol ----------------------------------------------------------
    def discover(self) -> list[HardwareGroup]:
        """Probe every alive node (waiting up to the probe timeout) and group them by type."""
        for node in self._alive_nodes():
            self._start_probe(node)
        if self._probes:
            ready, pending = self._ray.wait(
                list(self._probes), num_returns=len(self._probes), timeout=self._probe_timeout_s
            )
            for ref in ready:
                self._absorb_probe(ref, self._probes.pop(ref))
            for ref in pending:
                node_id = self._probes.pop(ref)["NodeID"]
                logger.warning("node %s did not answer its probe; it is not used", node_id)
                self._unprobeable.add(node_id)
                self._ray.cancel(ref, force=True)
        self._joined.clear()
        self._last_refresh = time.monotonic()
        return list(self._groups.values())

    def joined(self) -> list[HardwareGroup]:
        self.refresh()
        joined, self._joined = self._joined, []
        return joined

    def lost_types(self) -> dict[str, str]:
        return dict(self._lost)

    # -- what the executor asks ----------------------------------------------------------
    def group(self, key: str) -> HardwareGroup | None:
        return self._groups.get(key)

    def lost_reason(self, key: str) -> str:
        return self._lost.get(key, "no node of this hardware type is left")

    def is_dead(self, node_id: str) -> bool:
        return node_id in self._dead

    def refresh(self, force: bool = False) -> None:
        """Between trials: drop nodes that left, probe nodes that joined (non-blocking)."""
        now = time.monotonic()
        if not force and now - self._last_refresh < self._refresh_s:
            return
        self._last_refresh = now
        alive = {n["NodeID"]: n for n in self._alive_nodes()}
        for node_id in self.pool.node_ids() - set(alive):
            self.node_left(node_id, "it is no longer alive in the cluster")
        probing = {n["NodeID"] for n in self._probes.values()}
        for node_id, node in alive.items():
            if node_id not in self.pool and node_id not in probing | self._unprobeable:
                self._start_probe(node)
        if self._probes:
            ready, _ = self._ray.wait(list(self._probes), num_returns=len(self._probes), timeout=0)
            for ref in ready:
                self._absorb_probe(ref, self._probes.pop(ref))

    def node_left(self, node_id: str, reason: str) -> None:
        """Forget ``node_id``; a type left without nodes is lost, with ``reason``."""
        if node_id in self._dead:
            return
        self._dead.add(node_id)
        self.stats["nodes_lost"] += 1
        for key in self.pool.remove(node_id):
            self._lost[key] = (
                "every node of this hardware type left the cluster during the search "
                f"(the last one, {node_id[:12]}: {reason})"
            )
        self._sync_groups()

    # -- probing -------------------------------------------------------------------------
    def _alive_nodes(self) -> list[dict[str, Any]]:
        return [
            n
            for n in self._ray.nodes()
            if n.get("Alive")
            and n.get("Resources", {}).get("CPU", 0) > 0
            and n["NodeID"] not in self._dead
        ]

    def _start_probe(self, node: dict[str, Any]) -> None:
        cached = self._probe_cache.get((node["NodeID"], self._env_key))
        if cached is not None:
            self._add_node(cached, node)
            return
        options = {"num_cpus": 0, "max_retries": 0, "name": "speedster-probe"}
        ref = self._probe_fn.options(
            scheduling_strategy=self._affinity(node["NodeID"]), **options, **self._task_options
        ).remote(node["NodeID"])
        self._probes[ref] = node
        self.stats["probes"] += 1

    def _absorb_probe(self, ref: Any, node: dict[str, Any]) -> None:
        node_id = node["NodeID"]
        try:
            probe: NodeProbe = self._ray.get(ref)
        except Exception as exc:  # node died while probed, or the package is missing there
            logger.warning("probe of node %s failed; it is not used: %s", node_id, exc)
            self._unprobeable.add(node_id)
            return
        self._probe_cache[(node_id, self._env_key)] = probe
        self._add_node(probe, node)

    def _add_node(self, probe: NodeProbe, node: dict[str, Any]) -> None:
        node_id = node["NodeID"]
        if node_id in self._dead:
            return
        hardware = with_node_labels(probe.hardware, node.get("Labels") or {})
        node_group = str((node.get("Labels") or {}).get(GROUP_LABEL) or "")
        for h in hardware if node_group else ():
            self.node_groups.setdefault(h.key, node_group)
        resources = node.get("Resources", {})
        self.pool.add(node_id, hardware, float(resources["CPU"]), int(resources.get("GPU", 0)))
        for h in hardware:
            if node_id not in self.pool.nodes_of(h.key):
                continue  # a GPU type on a node that lends Ray no GPU
            self._lost.pop(h.key, None)
            if h.key in self._groups:
                continue
            group = HardwareGroup(h, (), probe.catalog(_probe_key(probe, h)))
            self._groups[h.key] = group
            self._joined.append(group)
        self._sync_groups()

    def _sync_groups(self) -> None:
        for key, group in self._groups.items():
            self._groups[key] = replace(group, node_ids=self.pool.nodes_of(key))


def _probe_key(probe: NodeProbe, hardware: HardwareType) -> str:
    # The catalog was computed under the detected key; a simulated key maps back by device.
    keys = dict(probe.catalogs)
    if hardware.key in keys:
        return hardware.key
    return next(h.key for h in probe.hardware if h.device is hardware.device)
