"""RayExecutor's scheduling logic against a stand-in for Ray: no cluster, deterministic.

``FakeRay`` runs a task when the executor waits for it (unless its node is held), knows
the executor's three task functions (probe, shared export, trial) and fails tasks of nodes
that die the way Ray does (``NodeDiedError``). The real cluster is in tests/integration.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from speedster_dist.hardware import HARDWARE_LABEL
from speedster_dist.records import (
    Candidate,
    DeviceKind,
    HardwareType,
    LatencyStats,
    SavedCandidate,
    TrialResult,
    TrialStatus,
)
from speedster_dist.runtime import NodeProbe, SearchRequest, run_search
from speedster_dist.runtime._catalog import probe_node
from speedster_dist.runtime._shared_export import SharedExport
from speedster_dist.runtime.ray import RayExecutor
from speedster_dist.runtime.ray._node_pool import NodePool
from speedster_dist.runtime.ray._run_clock import started_trial_task
from speedster_dist.runtime.ray._shared_export_job import _shared_export_task
from speedster_dist.search import Budget, SpaceSettings

from .conftest import fake_probe


class NodeDiedError(Exception):
    pass


class TaskUnschedulableError(Exception):
    pass


class WorkerCrashedError(Exception):
    pass


class ObjectLostError(Exception):
    pass


class TaskCancelledError(Exception):
    pass


@dataclass(frozen=True)
class Affinity:
    node_id: str
    soft: bool


@dataclass(eq=False)
class Ref:
    task: Task
    index: int


@dataclass(eq=False)
class Task:
    fn: Any
    args: tuple[Any, ...]
    options: dict[str, Any]
    node_id: str
    done: bool = False
    values: tuple[Any, ...] = ()
    error: Exception | None = None


def _stats(p50: float) -> LatencyStats:
    return LatencyStats(10, p50, 0.0, p50, p50, p50, p50, 10 * p50)


@dataclass
class FakeRay:
    """Just enough of the ``ray`` module for RayExecutor."""

    nodes_spec: dict[str, dict[str, Any]]
    latency: dict[str, float] = field(default_factory=dict)  # candidate label -> p50
    held: set[str] = field(default_factory=set)  # nodes whose tasks do not finish yet
    tasks: list[Task] = field(default_factory=list)
    clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    exceptions: ClassVar[Any] = SimpleNamespace(
        NodeDiedError=NodeDiedError,
        TaskUnschedulableError=TaskUnschedulableError,
        WorkerCrashedError=WorkerCrashedError,
        ObjectLostError=ObjectLostError,
    )
    NodeAffinitySchedulingStrategy: ClassVar[Any] = Affinity

    # -- the cluster
    def nodes(self) -> list[dict[str, Any]]:
        return [
            {
                "NodeID": node_id,
                "Alive": spec.get("alive", True),
                "Resources": {"CPU": spec.get("cpus", 2.0), "GPU": spec.get("gpus", 0)},
                "Labels": {HARDWARE_LABEL: spec["type"]},
            }
            for node_id, spec in self.nodes_spec.items()
        ]

    def kill(self, node_id: str) -> None:
        """The node dies: Ray fails its running tasks at once, its listing lags behind."""
        for task in self.tasks:
            if task.node_id == node_id and not task.done:
                task.done, task.error = True, NodeDiedError(f"node {node_id} died")
        self.held.discard(node_id)
        self.nodes_spec[node_id]["dead"] = True

    def running_trials(self, node_id: str) -> list[Task]:
        return [
            t
            for t in self.tasks
            if t.fn is started_trial_task and not t.done and t.node_id == node_id
        ]

    # -- the API
    def remote(self, fn: Any = None, **decorated: Any) -> Any:
        ray = self
        if fn is None:  # ray.remote(num_gpus=1, max_calls=1)(fn)
            return lambda function: ray.remote(function, **decorated)

        class _Remote:
            def options(self, **options: Any) -> Any:
                class _Bound:
                    def remote(self, *args: Any) -> Any:
                        return ray._submit(fn, args, {**options, "decorator": decorated})

                return _Bound()

        return _Remote()

    def _submit(self, fn: Any, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        node_id = options["scheduling_strategy"].node_id
        if fn is started_trial_task and not options.get("num_gpus"):
            # The rule under test: never two trials measuring on one node.
            assert not self.running_trials(node_id), f"two trials on {node_id}"
            assert options["num_cpus"] == self.nodes_spec[node_id].get("cpus", 2.0)
        task = Task(fn, args, options, node_id)
        if self.nodes_spec[node_id].get("dead"):
            task.done, task.error = True, TaskUnschedulableError("the node no longer exists")
        self.tasks.append(task)
        count = options.get("num_returns", 1)
        refs = tuple(Ref(task, i) for i in range(count))
        return refs if count > 1 else refs[0]

    def _run(self, task: Task) -> None:
        task.done = True
        if task.fn is probe_node:  # every node detects the same CPU; labels tell them apart
            hardware = HardwareType("cpu-detected", DeviceKind.CPU, cores=2)
            probe = fake_probe("fake", "onnxruntime", hardware=hardware)
            if self.nodes_spec[task.node_id].get("gpus"):  # and a GPU, when it lends some
                gpu = HardwareType(GPU_TYPE, DeviceKind.GPU)
                probe = NodeProbe(probe.node_id, (hardware, gpu), (*probe.catalogs, (GPU_TYPE, ())))
            task.values = (probe,)
        elif task.fn is _shared_export_task:
            task.values = ("", SharedExport("k1", "model.onnx", {"model.onnx": b"onnx"}))
        elif task.fn is started_trial_task:
            # Like Ray, object refs passed as arguments arrive as their values.
            args = tuple(self.get(a) if isinstance(a, Ref) else a for a in task.args)
            _, export, candidate, hardware, node_id, is_baseline, _, cpus = args
            assert cpus == task.options["num_cpus"]  # torch's threads are sized to it
            start = next(self.clock)
            result = TrialResult(
                candidate,
                TrialStatus.COMPLETE,
                latency=_stats(self.latency.get(candidate.label, 0.004)),
                node_id=node_id,
                is_baseline=is_baseline,
                extra=(("export", export.key if export else ""),),
                started_at=start,
                finished_at=start + 0.5,
            )
            files = {"model.pt": candidate.label.encode()}
            task.values = (result, SavedCandidate(candidate.backend, "cpu", {}, files))
        else:  # pragma: no cover - nothing else is submitted
            raise AssertionError(task.fn)

    def put(self, value: Any) -> Any:
        task = Task(None, (), {}, "", True, (value,))
        return Ref(task, 0)

    def wait(
        self, refs: list[Any], num_returns: int = 1, timeout: float | None = None, **_: Any
    ) -> tuple[list[Any], list[Any]]:
        for ref in refs:
            task = ref.task
            if not task.done and task.node_id not in self.held:
                self._run(task)
        ready = [r for r in refs if r.task.done][: max(num_returns, 1)]
        return ready, [r for r in refs if r not in ready]

    def get(self, ref: Any, timeout: float | None = None) -> Any:
        if not ref.task.done:
            self._run(ref.task)
        if ref.task.error is not None:
            raise ref.task.error
        return ref.task.values[ref.index]

    def cancel(self, ref: Any, force: bool = False) -> None:
        if not ref.task.done:
            ref.task.done, ref.task.error = True, TaskCancelledError("cancelled")


A, B = "cpu-sim-a", "cpu-sim-b"
GPU_TYPE = "gpu-sim-l4"


def _fake_ray(**nodes: str) -> FakeRay:
    return FakeRay({node_id: {"type": key} for node_id, key in nodes.items()})


def _candidate(key: str, backend: str = "fake", precision: str = "fp32", **knobs: Any):
    return Candidate.make(backend, precision, key, knobs=knobs or {"slowdown": 1})


def _hw(key: str) -> HardwareType:
    return HardwareType(key, DeviceKind.CPU, cores=2)


@pytest.fixture
def executor_for(fakes, payload):
    def make(ray: FakeRay, **kw: Any) -> RayExecutor:
        executor = RayExecutor(trial_timeout_s=kw.pop("timeout", 60), refresh_s=0, ray_api=ray)
        executor.discover()
        executor.prepare(payload)
        return executor

    return make


# -- placement bookkeeping ---------------------------------------------------------------


def test_pool_gives_a_cpu_trial_the_whole_node_and_a_gpu_trial_one_gpu():
    pool = NodePool()
    gpu = HardwareType("gpu-l4", DeviceKind.GPU)
    pool.add("n1", [_hw(A), gpu], cpus=8, gpus=2)
    assert pool.free_count(A) == 1 and pool.free_count("gpu-l4") == 2
    first = pool.acquire("n1", "gpu-l4")
    assert (first.num_cpus, first.num_gpus) == (4.0, 1)
    assert pool.free_count(A) == 0  # a CPU trial would share the host cores
    assert pool.free_count("gpu-l4") == 1
    pool.acquire("n1", "gpu-l4")
    assert pool.free_node("gpu-l4") is None
    pool.release("n1", "gpu-l4")
    pool.release("n1", "gpu-l4")
    whole = pool.acquire("n1", A)
    assert (whole.num_cpus, whole.num_gpus) == (8, 0)
    assert pool.free_count("gpu-l4") == 0
    with pytest.raises(RuntimeError, match="no free slot"):
        pool.acquire("n1", A)


def test_pool_spreads_trials_and_reports_types_left_without_nodes():
    pool = NodePool()
    for node_id, key in (("a1", A), ("a2", A), ("b1", B)):
        pool.add(node_id, [_hw(key)], cpus=1, gpus=0)
    pool.add("g0", [HardwareType("gpu-x", DeviceKind.GPU)], cpus=1, gpus=0)
    assert "gpu-x" not in pool.hardware_keys()  # no GPU lent to Ray: nowhere to run a GPU trial
    first = pool.free_node(A)
    assert first is not None
    pool.acquire(first, A)
    pool.release(first, A)
    assert pool.free_node(A) != first  # least recently used first
    assert pool.remove("a1") == [] and pool.remove("b1") == [B]
    assert pool.nodes_of(A) == ("a2",) and pool.remove("nope") == []
    pool.release("a1", A)  # a trial that outlived its node: ignored


# -- the executor ------------------------------------------------------------------------


def test_types_are_discovered_from_labels_and_trials_stay_on_their_type(executor_for, payload):
    ray = _fake_ray(a1=A, a2=A, b1=B)
    executor = RayExecutor(refresh_s=0, ray_api=ray)
    groups = {g.hardware.key: g for g in executor.discover()}
    assert set(groups) == {A, B}
    assert set(groups[A].node_ids) == {"a1", "a2"} and groups[B].node_ids == ("b1",)
    settings = SpaceSettings(
        metric_drop_ths=0.01,
        tune_knobs=True,
        baseline_backend="fake",
        ignored_backends=frozenset({"onnxruntime"}),
    )
    request = SearchRequest(
        payload=payload, settings=settings, budget=Budget(math.inf, True, "test"), poll_s=0
    )
    outcome = run_search(executor, request)
    nodes_of = {A: {"a1", "a2"}, B: {"b1"}}
    assert len(outcome.results) == 12 and all(r.ok for r in outcome.results)
    assert all(r.node_id in nodes_of[r.candidate.hardware_key] for r in outcome.results)
    assert {r.node_id for r in outcome.results if r.candidate.hardware_key == A} == nodes_of[A]
    assert set(outcome.winners) == {A, B}
    assert outcome.portable is not None  # the baseline's files
    assert all(r.started_at > 0 for r in outcome.results)


def test_a_trial_whose_node_dies_is_retried_once_on_another_node_of_its_type(executor_for):
    ray = _fake_ray(a1=A, a2=A, b1=B)
    executor = executor_for(ray)
    ray.held = {"a1", "a2"}
    executor.submit(_candidate(A, slowdown=1), _hw(A), True)
    executor.submit(_candidate(A, slowdown=2), _hw(A), False)
    assert not executor.has_capacity(A) and executor.in_flight() == 2
    victim = next(n for n in ("a1", "a2") if ray.running_trials(n))
    survivor = "a2" if victim == "a1" else "a1"
    ray.kill(victim)
    assert executor.poll(0) == []  # the lost trial went back to the queue...
    assert executor.stats["retries"] == 1 and executor.in_flight() == 2
    ray.held.clear()
    outcomes = executor.poll(0) + executor.poll(0)
    assert len(outcomes) == 2 and all(o.result.ok for o in outcomes)
    assert {o.result.node_id for o in outcomes} == {survivor}  # ...and ran on the survivor
    retried = [o.result for o in outcomes if dict(o.result.extra).get("retried_after")]
    assert len(retried) == 1 and victim[:12] in dict(retried[0].extra)["retried_after"]
    assert executor.lost_types() == {}


def test_a_second_loss_or_the_last_node_of_a_type_means_lost_with_the_reason(executor_for):
    ray = _fake_ray(a1=A, b1=B)
    executor = executor_for(ray)
    ray.held = {"b1"}
    executor.submit(_candidate(B), _hw(B), True)
    executor.submit(_candidate(B, slowdown=2), _hw(B), False)  # queued behind the first
    ray.kill("b1")
    outcomes = executor.poll(0)
    assert len(outcomes) == 2 and all(o.result.status is TrialStatus.FAILED for o in outcomes)
    assert all(o.result.reason.startswith("lost:") for o in outcomes)
    assert "no other node of this hardware type" in outcomes[0].result.reason
    assert "every node of this hardware type left" in executor.lost_types()[B]
    assert not executor.has_capacity(B) and executor.in_flight() == 0
    # A crash that is not a node loss is a failure, never retried.
    ray.held = {"a1"}
    executor.submit(_candidate(A), _hw(A), True)
    task = ray.running_trials("a1")[0]
    task.done, task.error = True, WorkerCrashedError("segfault")
    (outcome,) = executor.poll(0)
    assert outcome.result.status is TrialStatus.FAILED and "segfault" in outcome.result.reason
    assert executor.stats["retries"] == 0


def test_nodes_that_join_are_probed_and_used_new_types_reported(executor_for):
    ray = _fake_ray(a1=A)
    executor = executor_for(ray)
    assert executor.joined() == []
    ray.nodes_spec["a2"] = {"type": A}
    ray.nodes_spec["c1"] = {"type": "cpu-sim-c"}
    joined = executor.joined()
    assert [g.hardware.key for g in joined] == ["cpu-sim-c"]
    ray.held = {"a1"}
    executor.submit(_candidate(A), _hw(A), True)
    assert executor.has_capacity(A)  # the new A node
    executor.submit(_candidate(A, slowdown=2), _hw(A), False)
    assert [t.node_id for t in ray.tasks if t.fn is started_trial_task] == ["a1", "a2"]
    # A node that leaves without a running trial is dropped at the next refresh.
    ray.nodes_spec["a2"]["alive"] = False
    ray.held.add("a2")
    executor.poll(0)
    assert "a2" not in executor.membership.pool.node_ids()


def test_onnx_trials_wait_for_one_shared_export_others_do_not(executor_for):
    ray = _fake_ray(a1=A, a2=A, b1=B)
    executor = executor_for(ray)
    ort_a = Candidate.make("onnxruntime", "fp32", A)
    ort_b = Candidate.make("onnxruntime", "fp32", B)
    executor.submit(ort_a, _hw(A), False)
    exports = [t for t in ray.tasks if t.fn is _shared_export_task]
    assert len(exports) == 1 and not [t for t in ray.tasks if t.fn is started_trial_task]
    executor.submit(_candidate(B), _hw(B), True)  # not an ONNX consumer: starts at once
    assert [t.node_id for t in ray.tasks if t.fn is started_trial_task] == ["b1"]
    outcomes = []
    for _ in range(4):
        outcomes += executor.poll(0)
    executor.submit(ort_b, _hw(B), False)
    for _ in range(3):
        outcomes += executor.poll(0)
    by_backend = {
        (o.result.candidate.backend, o.result.candidate.hardware_key): o for o in outcomes
    }
    assert dict(by_backend["onnxruntime", A].result.extra)["export"] == "k1"
    assert dict(by_backend["onnxruntime", B].result.extra)["export"] == "k1"
    assert dict(by_backend["fake", B].result.extra)["export"] == ""
    assert executor.stats["exports"] == 1
    assert len([t for t in ray.tasks if t.fn is _shared_export_task]) == 1


def test_an_export_whose_node_is_gone_restarts_on_another_node(executor_for):
    # A node a previous search probed may be listed alive after it died: the export sent
    # there is unschedulable. The node is dropped and the export made once elsewhere.
    ray = _fake_ray(a1=A, a2=A)
    executor = executor_for(ray)
    ray.nodes_spec["a1"]["dead"] = True  # Ray still lists it as alive
    executor.submit(Candidate.make("onnxruntime", "fp32", A), _hw(A), False)
    outcomes = []
    for _ in range(5):
        outcomes += executor.poll(0)
    exports = [t for t in ray.tasks if t.fn is _shared_export_task]
    assert [t.node_id for t in exports] == ["a1", "a2"]
    assert executor.stats["exports"] == 2 and "a1" not in executor.membership.pool.node_ids()
    (outcome,) = outcomes
    assert outcome.result.ok and dict(outcome.result.extra)["export"] == "k1"


def test_each_gpu_trial_gets_a_fresh_worker_cpu_trials_reuse_theirs(executor_for):
    ray = FakeRay({"g1": {"type": A, "gpus": 2, "cpus": 8.0}})
    executor = executor_for(ray)
    gpu = HardwareType(GPU_TYPE, DeviceKind.GPU)
    executor.submit(_candidate(GPU_TYPE), gpu, False)
    executor.submit(_candidate(GPU_TYPE, precision="fp16"), gpu, False)  # the node's 2nd GPU
    trials = [t for t in ray.tasks if t.fn is started_trial_task]
    assert len(trials) == 2
    for task in trials:
        assert task.options["decorator"] == {"num_gpus": 1, "max_calls": 1}
        assert task.options["num_gpus"] == 1 and task.options["num_cpus"] == 4.0
    for _ in range(3):
        executor.poll(0)
    executor.submit(_candidate(A), _hw(A), False)
    cpu_trial = [t for t in ray.tasks if t.fn is started_trial_task][-1]
    assert cpu_trial.options["decorator"] == {} and cpu_trial.options["num_gpus"] == 0


def test_a_trial_past_its_limit_is_cancelled_and_its_node_freed(executor_for):
    ray = _fake_ray(a1=A)
    executor = executor_for(ray, timeout=0)
    ray.held = {"a1"}
    executor.submit(_candidate(A), _hw(A), True)
    (outcome,) = executor.poll(0)
    assert outcome.result.status is TrialStatus.FAILED
    assert outcome.result.reason == "timed out after 0 s"
    assert executor.has_capacity(A)


def test_the_best_so_far_is_fetched_at_once_the_others_stay_remote(executor_for):
    ray = _fake_ray(a1=A)
    ray.latency = {"fake fp32 slowdown=1": 0.004, "fake fp32 slowdown=2": 0.008}
    executor = executor_for(ray)
    executor.submit(_candidate(A, slowdown=1), _hw(A), True)
    (fast,) = executor.poll(0)
    executor.submit(_candidate(A, slowdown=2), _hw(A), False)
    (slow,) = executor.poll(0)
    assert isinstance(fast.artifact, SavedCandidate)  # survives its node leaving
    assert isinstance(slow.artifact, Ref)  # fetched only if it is ever needed
    assert executor.fetch(slow.artifact).files == {"model.pt": b"fake fp32 slowdown=2"}
