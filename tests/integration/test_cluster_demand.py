"""Node-group demand on a real local Ray cluster whose autoscaler is simulated.

The driver's demand goes through Ray's own ``request_resources`` (to the control store, as
on a real cluster); a test thread plays the autoscaler: it reads the demand where Ray's v1
autoscaler reads it and adds a node of each demanded group it knows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from speedster_dist.backends import backend_names
from speedster_dist.hardware import HARDWARE_LABEL
from speedster_dist.measure import MeasureSettings
from speedster_dist.runtime import GROUP_LABEL, SearchRequest, run_search
from speedster_dist.runtime.ray import RayExecutor
from speedster_dist.runtime.ray._run_clock import StartMarks
from speedster_dist.search import Budget, SpaceSettings
from speedster_dist.testing.backend_contract import contract_payload
from speedster_dist.testing.fakes import FAKE_BACKENDS

from .conftest import ray_cluster

pytestmark = pytest.mark.integration

TYPES = {"cpu-a": "cpu-sim-a", "cpu-b": "cpu-sim-b"}
MEASURE = MeasureSettings(
    warmup_calls=1, warmup_s=0, min_calls=5, min_duration_s=0.05, load_check=False
)


def _resource(group: str) -> str:
    return f"speedster-group-{group}"


class KvAutoscaler:
    """Adds a 1-CPU node of each demanded group that has none (once), as Ray's v1 autoscaler
    would.

    Ray starts nodes of a local cluster from the main thread only, so the simulation runs
    where the driver lists the nodes (:meth:`nodes`, given to the demand as its node list).
    """

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.demands: list[list[dict[str, float]]] = []
        self.launched: list[str] = []

    def demand(self) -> list[dict[str, float]] | None:
        from ray._private.ray_constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)
        return None if raw is None else json.loads(raw)

    def nodes(self) -> list[dict]:
        import ray

        bundles = self.demand()
        if bundles is not None and (not self.demands or bundles != self.demands[-1]):
            self.demands.append(bundles)
            present = {r for n in ray.nodes() if n["Alive"] for r in n["Resources"]}
            for group, key in TYPES.items():
                wanted = any(_resource(group) in b for b in bundles)
                if wanted and _resource(group) not in present and group not in self.launched:
                    self.launched.append(group)
                    self.cluster.add_node(
                        num_cpus=1,
                        labels={HARDWARE_LABEL: key, GROUP_LABEL: group},
                        resources={_resource(group): 1},
                    )
        return ray.nodes()


@pytest.fixture(scope="module")
def one_group_cluster():
    """Head (no CPU) + one node of group cpu-a; cpu-b exists only in the cluster config."""
    with ray_cluster(FAKE_BACKENDS) as cl:
        cl.add_node(
            num_cpus=1,
            labels={HARDWARE_LABEL: TYPES["cpu-a"], GROUP_LABEL: "cpu-a"},
            resources={_resource("cpu-a"): 1},
        )
        yield cl


def _config(path: Path) -> Path:
    """A cluster config in Ray's autoscaler format: a head and the two groups at 0 nodes."""
    types = {"head": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0}}
    for group in TYPES:
        types[group] = {
            "min_workers": 0,
            "max_workers": 1,
            "resources": {_resource(group): 1},
            "labels": {GROUP_LABEL: group},
            "node_config": {},
        }
    config = {"head_node_type": "head", "available_node_types": types}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow  # a node group started while the search waits
def test_the_search_brings_up_a_group_at_zero_nodes_and_releases_the_demand(
    one_group_cluster, tmp_path
):
    autoscaler = KvAutoscaler(one_group_cluster)
    executor = RayExecutor(trial_timeout_s=120, refresh_s=0.2)
    demand = executor.group_demand(str(_config(tmp_path / "cluster.yaml")), wait_s=180)
    demand.nodes = autoscaler.nodes
    request = SearchRequest(
        payload=contract_payload("mlp", 0.01, MEASURE),
        settings=SpaceSettings(
            metric_drop_ths=0.01,
            baseline_backend="fake",
            ignored_backends=frozenset(backend_names()) - {"fake"},
        ),
        budget=Budget(math.inf, tune_knobs=False, label="test"),
        poll_s=0.2,
        demand=demand,
    )
    outcome = run_search(executor, request)
    final = autoscaler.demand()
    raised = autoscaler.demands[0]
    assert raised == [{"CPU": 1.0, _resource(g): 1.0} for g in TYPES]
    assert final == []  # released at the end
    assert autoscaler.launched == ["cpu-b"]  # cpu-a had its node already
    assert sorted(outcome.winners) == sorted(TYPES.values())
    assert outcome.missing_groups == {}
    nodes_b = {r.node_id for r in outcome.results if r.candidate.hardware_key == "cpu-sim-b"}
    import ray

    labelled = {n["NodeID"]: n["Labels"].get(GROUP_LABEL) for n in ray.nodes()}
    assert {labelled[n] for n in nodes_b} == {"cpu-b"}  # its trials ran on the new node
    # Every trial task marked its start (trial_timeout counts from there); all were cleaned.
    assert StartMarks().started() == set()
