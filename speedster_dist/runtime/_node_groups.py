"""Node groups: what a worker group is called, and which groups a cluster declares.

A node group is a worker group of an autoscaler (``available_node_types`` of a Ray cluster
YAML, ``workerGroupSpecs`` of a KubeRay RayCluster) whose nodes carry the :data:`GROUP_LABEL`
label. The declared groups come from ``node_groups`` (names, or such a YAML), else from the
labels of the nodes alive now and the autoscaler's own config on the head
(``~/ray_bootstrap_config.yaml``), when there is one. Plain data: no Ray is imported here (the
Ray executor asks the autoscaler for the groups, :mod:`speedster_dist.runtime.ray`); what a
group may be called is :func:`speedster_dist.naming.parse_group_names`, which the options
check before anything connects.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speedster_dist.naming import parse_group_names

__all__ = [
    "GROUP_LABEL",
    "NodeGroup",
    "declared_groups",
    "groups_from_config",
    "groups_of_nodes",
]

logger = logging.getLogger(__name__)

GROUP_LABEL = "speedster-dist/node-group"
# Where `ray up` puts the autoscaler's config on the head node.
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")
_BUILTIN_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


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
