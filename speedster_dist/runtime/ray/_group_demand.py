"""Demand for every worker group: the autoscaler brings up the groups a search should cover.

Costly groups start at zero nodes (cluster/*.yaml), and trials only run on nodes that exist,
so a search must *ask* for them. :class:`GroupDemand` asks Ray's autoscaler for one node of
each declared group (``request_resources`` with one ``{"CPU": 1}`` bundle per group and a
label selector on the group's :data:`~speedster_dist.runtime.GROUP_LABEL`; the group's custom
resources join its bundle, which is what the v1 autoscaler, blind to label selectors, scales
on), watches for the nodes to join, gives up on a group after ``wait_s`` seconds, and
releases the demand at the end. The nodes that join are probed and searched by the executor
as any node is. Which groups are declared: :mod:`speedster_dist.runtime._node_groups`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from speedster_dist.runtime._node_groups import GROUP_LABEL, NodeGroup
from speedster_dist.runtime._protocol import Demand
from speedster_dist.search import DEFAULT_GROUP_WAIT_S

__all__ = ["GroupDemand", "Request", "ray_request"]

logger = logging.getLogger(__name__)

Request = Callable[[list[dict[str, float]], list[dict[str, str]] | None], None]


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
class GroupDemand(Demand):
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
