"""Demand for node groups against FakeRay and a simulated autoscaler (a test hook: the
autoscaler adds one node of a group when a demand for that group appears)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from speedster_dist.errors import InputError
from speedster_dist.options import parse_run_options
from speedster_dist.present import format_summary
from speedster_dist.runtime import GROUP_LABEL, NodeGroup, RayExecutor, run_search
from speedster_dist.runtime._demand import groups_from_config, groups_of_nodes
from speedster_dist.runtime._task import trial_task
from speedster_dist.search import Budget, ExhaustiveSearcher, SpaceSettings

from .test_executors import A, B, FakeRay

CLUSTER = Path(__file__).resolve().parents[3] / "cluster"
SETTINGS = SpaceSettings(metric_drop_ths=0.01, baseline_backend="fake")


@dataclass
class GroupedRay(FakeRay):
    """FakeRay whose nodes carry their group label; a booting node is listed (not alive)
    for a number of node listings before it is alive."""

    booting: dict[str, int] = field(default_factory=dict)  # node id -> listings left

    def nodes(self) -> list[dict[str, Any]]:
        for node_id, left in list(self.booting.items()):
            self.booting[node_id] = left - 1
            if left <= 0:
                del self.booting[node_id]
                self.nodes_spec[node_id]["alive"] = True
        listed = super().nodes()
        for node in listed:
            group = self.nodes_spec[node["NodeID"]].get("group")
            if group:
                node["Labels"][GROUP_LABEL] = group
        return listed


@dataclass
class SimulatedAutoscaler:
    """Launches one node of a demanded group it knows (booting for ``delay`` listings)."""

    ray: GroupedRay
    types: dict[str, str]  # group -> the hardware type of its nodes
    delay: int = 0
    requests: list[tuple[list[dict[str, float]], Any]] = field(default_factory=list)

    def request(self, bundles: list[dict[str, float]], selectors: Any) -> None:
        self.requests.append((bundles, selectors))
        for selector in selectors or []:
            group = selector[GROUP_LABEL]
            node_id = f"{group}-1"
            if group in self.types and node_id not in self.ray.nodes_spec:
                self.ray.nodes_spec[node_id] = {
                    "type": self.types[group],
                    "group": group,
                    "alive": False,
                }
                self.ray.booting[node_id] = self.delay


def _executor(ray: GroupedRay, autoscaler: SimulatedAutoscaler, groups, wait_s=5.0):
    executor = RayExecutor(trial_timeout_s=60, refresh_s=0, ray_api=ray)
    return executor, executor.group_demand(groups, wait_s, request=autoscaler.request)


def _search(executor, demand, payload):
    return run_search(
        executor,
        payload,
        SETTINGS,
        Budget(30.0, False, "30"),
        make_searcher=lambda hw, space: ExhaustiveSearcher(space),
        poll_s=0.01,
        demand=demand,
    )


def test_demand_brings_up_each_group_is_released_and_a_missing_group_is_reported(fakes, payload):
    ray = GroupedRay({"a-1": {"type": A, "group": "cpu-a"}})
    autoscaler = SimulatedAutoscaler(ray, {"cpu-b": B})  # it cannot launch gpu-x
    executor, demand = _executor(ray, autoscaler, ["cpu-a", "cpu-b", "gpu-x"], wait_s=0.3)
    outcome = _search(executor, demand, payload)
    raised, released = autoscaler.requests
    assert raised[0] == [{"CPU": 1.0}] * 3
    assert raised[1] == [{GROUP_LABEL: g} for g in ("cpu-a", "cpu-b", "gpu-x")]
    assert released == ([], None)  # withdrawn at the end
    assert sorted(outcome.winners) == [A, B]  # the group that came up was searched
    trial_nodes = {t.node_id for t in ray.tasks if t.fn is trial_task}
    assert trial_nodes == {"a-1", "cpu-b-1"}
    assert list(outcome.missing_groups) == ["gpu-x"]
    assert "no node of it joined within 0.3 s" in outcome.missing_groups["gpu-x"]
    summary = format_summary(outcome)
    assert "Node groups that never came up" in summary and "gpu-x: no node" in summary


def test_a_group_that_boots_late_is_awaited_and_searched_mid_search(fakes, payload):
    ray = GroupedRay({"a-1": {"type": A, "group": "cpu-a"}})
    autoscaler = SimulatedAutoscaler(ray, {"cpu-b": B}, delay=40)
    executor, demand = _executor(ray, autoscaler, ["cpu-a", "cpu-b"], wait_s=30)
    outcome = _search(executor, demand, payload)
    assert sorted(outcome.winners) == [A, B]
    assert outcome.joined_late == [B]  # A's trials were over long before: the search waited
    assert outcome.missing_groups == {}
    assert autoscaler.requests[-1] == ([], None)


def test_with_every_group_at_zero_nodes_the_search_waits_for_the_first(fakes, payload):
    ray = GroupedRay({})
    autoscaler = SimulatedAutoscaler(ray, {"cpu-b": B}, delay=3)
    executor, demand = _executor(ray, autoscaler, ["cpu-b"])
    outcome = _search(executor, demand, payload)
    assert list(outcome.winners) == [B] and outcome.missing_groups == {}


def test_a_demand_the_autoscaler_refuses_is_reported_and_the_search_goes_on(fakes, payload):
    ray = GroupedRay({"a-1": {"type": A, "group": "cpu-a"}})

    def refuse(bundles, selectors):
        raise RuntimeError("no autoscaler here")

    executor = RayExecutor(trial_timeout_s=60, refresh_s=0, ray_api=ray)
    demand = executor.group_demand(["cpu-a", "gpu-x"], 600, request=refuse)
    outcome = _search(executor, demand, payload)  # no 600 s wait: nothing was asked
    assert list(outcome.winners) == [A]
    assert outcome.missing_groups == {
        "gpu-x": "the demand could not be sent to the autoscaler: RuntimeError: no autoscaler here"
    }


def test_groups_are_declared_by_the_nodes_or_the_shipped_cluster_configs():
    nodes = [
        {"NodeID": "h", "Alive": True, "Resources": {"CPU": 0}, "Labels": {GROUP_LABEL: "head"}},
        {"NodeID": "1", "Alive": True, "Resources": {"CPU": 4}, "Labels": {GROUP_LABEL: "g1"}},
        {"NodeID": "2", "Alive": False, "Resources": {"CPU": 4}, "Labels": {GROUP_LABEL: "g2"}},
        {"NodeID": "3", "Alive": True, "Resources": {"CPU": 4}, "Labels": {}},
    ]
    assert groups_of_nodes(nodes) == [NodeGroup("g1")]
    wanted = ["cpu-sapphire-rapids", "cpu-genoa", "gpu-l4", "gpu-a10g", "gpu-h100"]
    for config in ("autoscaler-aws.yaml", "kuberay.yaml"):
        groups = groups_from_config(CLUSTER / config)
        assert [g.name for g in groups] == wanted, config
        # Each group also has a resource of its own: the v1 autoscaler ignores label selectors.
        assert [g.bundle() for g in groups] == [
            {"CPU": 1.0, f"speedster-group-{name}": 1.0} for name in wanted
        ], config


def test_node_groups_are_validated_before_any_ray():
    options = parse_run_options(extras={"node_groups": ["gpu-l4", "gpu-l4", "cpu-genoa"]})
    assert options.node_groups == ("gpu-l4", "cpu-genoa")
    assert parse_run_options(extras={"node_groups": "c.yaml"}).node_groups == "c.yaml"
    assert parse_run_options().node_groups is None
    for bad in (["gpu l4"], [3], ["-x"], ["a" * 64]):
        with pytest.raises(InputError, match="node_groups"):
            parse_run_options(extras={"node_groups": bad})
    with pytest.raises(InputError, match="group_wait"):
        parse_run_options(extras={"group_wait": 0})
