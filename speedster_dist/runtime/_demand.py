"""Demand for every worker group: the autoscaler brings up the groups a search should cover.

Costly groups start at zero nodes (cluster/*.yaml), and trials only run on nodes that exist,
so a search must *ask* for them. :class:`GroupDemand` asks Ray's autoscaler for one node of
each declared group (``request_resources`` with one ``{"CPU": 1}`` bundle per group and a
label selector on the group's :data:`GROUP_LABEL`; the group's custom resources join its
bundle, which is what the v1 autoscaler, blind to label selectors, scales on), watches for the
nodes to join, gives up on a group after ``wait_s`` seconds, and releases the demand at the
end. The nodes that join are probed and searched by the executor as any node is.

Declared groups come from ``node_groups`` (names, or an autoscaler/KubeRay YAML), else from
the labels of the nodes alive now and the autoscaler's own config on the head
(``~/ray_bootstrap_config.yaml``), when there is one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speedster_dist.naming import parse_group_names
from speedster_dist.search import DEFAULT_GROUP_WAIT_S

__all__ = [
    "DEFAULT_GROUP_WAIT_S",
    "GROUP_LABEL",
    "GroupDemand",
    "NodeGroup",
    "groups_from_config",
    "groups_of_nodes",
    "parse_group_names",
    "ray_request",
]

logger = logging.getLogger(__name__)

GROUP_LABEL = "speedster-dist/node-group"
# Where `ray up` puts the autoscaler's config on the head node.
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")
_BUILTIN_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})

Request = Callable[[list[dict[str, float]], list[dict[str, str]] | None], None]


@dataclass(frozen=True)
class NodeGroup:
    """A worker group: its name (the :data:`GROUP_LABEL` value of its nodes) and the custom
    resources each of its nodes offers."""

    name: str
    resources: tuple[tuple[str, float], ...] = ()

    def bundle(self) -> dict[str, float]:
        return {"CPU": 1.0, **dict(self.resources)}

    def selector(self) -> dict[str, str]:
        return {GROUP_LABEL: self.name}


def groups_of_nodes(nodes: Iterable[Mapping[str, Any]]) -> list[NodeGroup]:
    """The groups of the alive nodes that lend Ray CPUs (a CPU-less head never runs trials)."""
    names = {
        (n.get("Labels") or {}).get(GROUP_LABEL, "")
        for n in nodes
        if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0
    }
    return [NodeGroup(name) for name in sorted(names - {""})]


def _custom(resources: Mapping[str, Any] | None) -> tuple[tuple[str, float], ...]:
    return tuple(
        sorted((k, float(v)) for k, v in (resources or {}).items() if k not in _BUILTIN_RESOURCES)
    )


def groups_from_config(path: Path) -> list[NodeGroup]:
    """The worker groups of a Ray autoscaler YAML (``available_node_types``) or a KubeRay
    RayCluster (``workerGroupSpecs``) that carry the :data:`GROUP_LABEL` label."""
    import yaml

    docs = [d for d in yaml.safe_load_all(path.expanduser().read_text(encoding="utf-8")) if d]
    groups: list[NodeGroup] = []
    for doc in docs:
        head = doc.get("head_node_type")
        for name, spec in (doc.get("available_node_types") or {}).items():
            label = (spec.get("labels") or {}).get(GROUP_LABEL)
            if label and name != head:
                groups.append(NodeGroup(label, _custom(spec.get("resources"))))
        for spec in (doc.get("spec") or {}).get("workerGroupSpecs") or []:
            label = (spec.get("labels") or {}).get(GROUP_LABEL)
            if label:
                resources = (spec.get("rayStartParams") or {}).get("resources")
                groups.append(NodeGroup(label, _custom(_json_or_empty(resources))))
    return list({g.name: g for g in groups}.values())


def _json_or_empty(text: Any) -> Mapping[str, Any]:
    import json

    if not isinstance(text, str):
        return {}
    try:
        # KubeRay's documented form: '"{\"name\": 1}"' (quoted, quotes escaped)
        loaded = json.loads(text.strip("'\"").replace('\\"', '"'))
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def declared_groups(
    node_groups: Sequence[str] | str | None, nodes: Iterable[Mapping[str, Any]]
) -> list[NodeGroup]:
    """Explicit names, a YAML naming the groups, or (None) what the cluster says."""
    if isinstance(node_groups, str) and node_groups.endswith((".yaml", ".yml")):
        return groups_from_config(Path(node_groups))
    if node_groups is not None:
        return [NodeGroup(name) for name in parse_group_names(node_groups)]
    found = {g.name: g for g in groups_of_nodes(nodes)}
    if BOOTSTRAP_CONFIG.expanduser().is_file():
        try:
            found.update({g.name: g for g in groups_from_config(BOOTSTRAP_CONFIG)})
        except Exception as exc:  # an unreadable config leaves the groups the nodes show
            logger.warning("cannot read the autoscaler config %s: %s", BOOTSTRAP_CONFIG, exc)
    return list(found.values())


def _send_request(bundles: list[dict[str, float]], selectors: list[dict[str, str]] | None) -> None:
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=bundles, bundle_label_selectors=selectors)


def ray_request(ray: Any) -> Request:
    """Ray's ``request_resources``; through a zero-CPU task in Ray Client mode (``ray://``),
    where the driver has no connection to the cluster's control store of its own."""

    def request(bundles: list[dict[str, float]], selectors: list[dict[str, str]] | None) -> None:
        from ray.util.client import ray as client

        if client.is_connected():
            task = ray.remote(num_cpus=0, max_retries=0)(_send_request)
            ray.get(task.remote(bundles, selectors), timeout=120)
        else:
            _send_request(bundles, selectors)

    return request


@dataclass
class GroupDemand:
    """One node of each of ``groups``, asked of the autoscaler for the length of a search.

    ``request(bundles, selectors)`` sends the demand (:func:`ray_request`, or a simulated
    autoscaler in tests); ``nodes()`` lists the cluster's nodes (``ray.nodes``);
    ``probed()`` the node ids the executor has probed and uses. A group is *up* once one of
    its nodes is probed; one not up ``wait_s`` seconds after :meth:`start` is given up on.
    """

    groups: list[NodeGroup]
    request: Request
    nodes: Callable[[], list[dict[str, Any]]]
    probed: Callable[[], Iterable[str]]
    wait_s: float = DEFAULT_GROUP_WAIT_S
    clock: Callable[[], float] = time.monotonic
    up: set[str] = field(default_factory=set)
    seen: dict[str, str] = field(default_factory=dict)  # group -> a node id that joined
    error: str = ""
    _started: float | None = None

    def start(self) -> None:
        """Raise the demand (a failure is reported per group, never fatal)."""
        self._started = self.clock()
        if not self.groups:
            return
        try:
            self.request([g.bundle() for g in self.groups], [g.selector() for g in self.groups])
        except Exception as exc:  # no autoscaler API, no permission: the search goes on
            self.error = f"{type(exc).__name__}: {exc}"[:300]
            logger.warning("could not ask the autoscaler for the node groups: %s", self.error)

    def release(self) -> None:
        """Withdraw the demand (an empty request replaces it); idle nodes then scale down."""
        if not self.groups or self._started is None:
            return
        try:
            self.request([], None)
        except Exception as exc:
            logger.warning("could not release the node-group demand: %s", exc)

    def pending(self) -> bool:
        """Whether some group is still awaited (not up, and its wait is not over)."""
        self._update()
        if self._started is None or self.error:
            return False
        waiting = [g for g in self.groups if g.name not in self.up]
        return bool(waiting) and self.clock() - self._started < self.wait_s

    def missing(self) -> dict[str, str]:
        """Each group that never came up, and why."""
        self._update()
        why = {}
        for group in self.groups:
            if group.name in self.up:
                continue
            if self.error:
                why[group.name] = f"the demand could not be sent to the autoscaler: {self.error}"
            elif group.name in self.seen:
                why[group.name] = (
                    f"its node {self.seen[group.name][:12]} joined but could not be probed "
                    "(is speedster-dist installed there? see the Ray logs of that node)"
                )
            else:
                why[group.name] = (
                    f"no node of it joined within {self.wait_s:g} s of asking the autoscaler "
                    "(check `ray status` and the autoscaler log: max_workers, quotas, "
                    "instance availability, labels)"
                )
        return why

    def _update(self) -> None:
        awaited = {g.name for g in self.groups} - self.up
        if not awaited:
            return
        probed = set(self.probed())
        for node in self.nodes():
            name = (node.get("Labels") or {}).get(GROUP_LABEL, "")
            if name in awaited and node.get("Alive"):
                self.seen.setdefault(name, node["NodeID"])
                if node["NodeID"] in probed:
                    self.up.add(name)
