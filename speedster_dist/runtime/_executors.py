"""Executors run trials for the driver: in-process (unit tests) or as Ray tasks.

The driver never touches Ray directly: it submits candidates, polls for finished trials and
fetches the files of the winners. This module owns where a trial runs (a node of its
hardware type, at most one trial measuring per node or GPU: see :mod:`._placement`), the
cluster as it changes during a search (nodes that join are probed and used, nodes that leave
are dropped and their running trials retried once elsewhere), the per-trial time limit, the
shared ONNX export, and the translation of a crashed or cancelled task into a FAILED result.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter, deque
from dataclasses import dataclass, replace
from typing import Any, Protocol

from speedster_dist.hardware import with_node_labels
from speedster_dist.records import (
    BackendInfo,
    Candidate,
    HardwareType,
    SavedCandidate,
    TrialResult,
    TrialStatus,
)
from speedster_dist.runtime._catalog import NodeProbe, probe_node
from speedster_dist.runtime._exports import SharedExport, consumes_onnx, make_shared_export
from speedster_dist.runtime._placement import NodePool
from speedster_dist.runtime._task import size_torch_threads, trial_task
from speedster_dist.runtime._trial import TrialPayload

__all__ = ["Executor", "HardwareGroup", "InlineExecutor", "RayExecutor", "TrialOutcome"]

logger = logging.getLogger(__name__)


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

    def joined(self) -> list[HardwareGroup]:
        """Hardware types that appeared since :meth:`discover` (or the last call)."""
        ...

    def lost_types(self) -> dict[str, str]:
        """Hardware types of which no node is left, and why."""
        ...


def failed_result(
    candidate: Candidate, reason: str, node_id: str = "", is_baseline: bool = False
) -> TrialResult:
    """A FAILED result the executor (not the trial) records: crash, loss, cancellation..."""
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

    def joined(self) -> list[HardwareGroup]:
        return []

    def lost_types(self) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class _Queued:
    """A submitted trial waiting for a node (or for the shared export)."""

    candidate: Candidate
    hardware: HardwareType
    is_baseline: bool
    prune_above_s: float | None
    attempt: int = 1
    retry_note: str = ""

    @property
    def key(self) -> str:
        return self.candidate.hardware_key


@dataclass
class _Running:
    queued: _Queued
    node_id: str
    deadline: float
    artifact_ref: Any


@dataclass
class _Export:
    """The search's shared ONNX export: idle -> running -> done (ref None if it failed)."""

    state: str = "idle"
    status_ref: Any = None  # small: "" or the error
    ref: Any = None  # the SharedExport itself, never fetched by the driver
    node_id: str = ""
    deadline: float = math.inf
    error: str = ""


_PROBE_CACHE: dict[tuple[str, str], NodeProbe] = {}  # (node id, runtime env) -> probe


def _shared_export_task(payload: TrialPayload, cpus: float) -> tuple[str, SharedExport]:
    size_torch_threads(cpus)
    export = make_shared_export(payload)
    return export.error, export


class RayExecutor:
    """Runs each trial as a Ray task pinned to one free node of the trial's hardware type.

    A CPU trial reserves every CPU of its node (a GPU trial one GPU and its share of the
    CPUs), so nothing else Ray schedules shares its cores while it measures. The node list
    is refreshed at most every ``refresh_s`` seconds between trials: nodes that joined are
    probed and used (a new hardware type is reported by :meth:`joined`), nodes that left are
    dropped. A trial whose node dies is retried on another node of its type (up to
    ``node_loss_retries`` times), else recorded as lost with the reason; any other crash is
    an outcome, never retried. A trial past ``trial_timeout_s`` is force-cancelled and its
    node freed. ``runtime_env`` is given to every task (URIs, ``pip``, ``env_vars``...;
    local folders such as :func:`speedster_dist.runtime.package_runtime_env` are only
    uploaded at the job level, through :func:`speedster_dist.runtime.connect`).
    ``ray_api`` replaces the ``ray`` module in unit tests.
    """

    def __init__(
        self,
        trial_timeout_s: float = 900.0,
        *,
        refresh_s: float = 2.0,
        node_loss_retries: int = 1,
        runtime_env: dict[str, Any] | None = None,
        share_exports: bool = True,
        probe_timeout_s: float = 180.0,
        ray_api: Any = None,
    ) -> None:
        if ray_api is None:
            import ray
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            ray_api, self._affinity_cls = ray, NodeAffinitySchedulingStrategy
        else:  # a stand-in for tests: it provides NodeAffinitySchedulingStrategy itself
            self._affinity_cls = ray_api.NodeAffinitySchedulingStrategy
        ray = ray_api
        self._ray: Any = ray  # Ray's stubs do not type .options(num_returns=2) results
        self._timeout = trial_timeout_s
        self._refresh_s = refresh_s
        self._retries = node_loss_retries
        self._task_options: dict[str, Any] = {"runtime_env": runtime_env} if runtime_env else {}
        # A node's probe holds while its raylet lives (a restarted node has a new id) and
        # its runtime environment is the same: searches of this process share them.
        self._probe_cache = _PROBE_CACHE if ray_api is None else {}
        self._env_key = json.dumps(runtime_env or {}, sort_keys=True, default=str)
        self._share_exports = share_exports
        self._probe_timeout_s = probe_timeout_s
        self._trial_fn: Any = ray.remote(trial_task)
        self._probe_fn: Any = ray.remote(probe_node)
        self._export_fn: Any = ray.remote(_shared_export_task)
        self._pool = NodePool()
        self._groups: dict[str, HardwareGroup] = {}
        self._joined: list[HardwareGroup] = []
        self._lost: dict[str, str] = {}
        self._dead: set[str] = set()
        self._unprobeable: set[str] = set()
        self._probes: dict[Any, dict[str, Any]] = {}
        self._last_refresh = -math.inf
        self._payload_ref: Any = None
        self._exportable = False
        self._export = _Export()
        self._queue: deque[_Queued] = deque()
        self._running: dict[Any, _Running] = {}
        self._finished: list[TrialOutcome] = []  # decided without running (lost types)
        self._best_p50: dict[str, float] = {}
        self.stats: Counter[str] = Counter()

    # -- the cluster -----------------------------------------------------------------
    def discover(self) -> list[HardwareGroup]:
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
        self._refresh()
        joined, self._joined = self._joined, []
        return joined

    def lost_types(self) -> dict[str, str]:
        return dict(self._lost)

    def _alive_nodes(self) -> list[dict[str, Any]]:
        return [
            n
            for n in self._ray.nodes()
            if n.get("Alive")
            and n.get("Resources", {}).get("CPU", 0) > 0
            and n["NodeID"] not in self._dead
        ]

    def _affinity(self, node_id: str) -> Any:
        return self._affinity_cls(node_id, soft=False)

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
        resources = node.get("Resources", {})
        self._pool.add(node_id, hardware, float(resources["CPU"]), int(resources.get("GPU", 0)))
        for h in hardware:
            if node_id not in self._pool.nodes_of(h.key):
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
            self._groups[key] = replace(group, node_ids=self._pool.nodes_of(key))

    def _refresh(self, force: bool = False) -> None:
        """Between trials: drop nodes that left, probe nodes that joined (non-blocking)."""
        now = time.monotonic()
        if not force and now - self._last_refresh < self._refresh_s:
            return
        self._last_refresh = now
        alive = {n["NodeID"]: n for n in self._alive_nodes()}
        for node_id in self._pool.node_ids() - set(alive):
            self._node_left(node_id, "it is no longer alive in the cluster")
        probing = {n["NodeID"] for n in self._probes.values()}
        for node_id, node in alive.items():
            if node_id not in self._pool and node_id not in probing | self._unprobeable:
                self._start_probe(node)
        if self._probes:
            ready, _ = self._ray.wait(list(self._probes), num_returns=len(self._probes), timeout=0)
            for ref in ready:
                self._absorb_probe(ref, self._probes.pop(ref))

    def _node_left(self, node_id: str, reason: str) -> None:
        if node_id in self._dead:
            return
        self._dead.add(node_id)
        self.stats["nodes_lost"] += 1
        for key in self._pool.remove(node_id):
            self._lost[key] = (
                "every node of this hardware type left the cluster during the search "
                f"(the last one, {node_id[:12]}: {reason})"
            )
        self._sync_groups()

    # -- running ---------------------------------------------------------------------
    def prepare(self, payload: TrialPayload) -> None:
        self._payload_ref = self._ray.put(payload)
        self._exportable = payload.source.module is not None and payload.source.onnx_path is None

    def has_capacity(self, hardware_key: str) -> bool:
        self._refresh()
        waiting = sum(1 for q in self._queue if q.key == hardware_key)
        return self._pool.free_count(hardware_key) > waiting

    def submit(
        self,
        candidate: Candidate,
        hardware: HardwareType,
        is_baseline: bool,
        prune_above_s: float | None = None,
    ) -> None:
        self._queue.append(_Queued(candidate, hardware, is_baseline, prune_above_s))
        self._dispatch()

    def _needs_export(self, item: _Queued) -> bool:
        if not (self._share_exports and self._exportable):
            return False
        group = self._groups.get(item.key)
        catalog = group.catalog if group is not None else ()
        info = next((i for i in catalog if i.name == item.candidate.backend), None)
        return info is not None and consumes_onnx(info)

    def _dispatch(self) -> None:
        """Start queued trials on free nodes, in submission order (retries first)."""
        for item in list(self._queue):
            if not self._pool.nodes_of(item.key):
                self._queue.remove(item)
                reason = self._lost.get(item.key, "no node of this hardware type is left")
                self._finished.append(
                    TrialOutcome(
                        failed_result(item.candidate, f"lost: {reason}", "", item.is_baseline)
                    )
                )
                continue
            export_ref = None
            if self._needs_export(item):
                if self._export.state == "idle":
                    self._start_export(item.key)
                if self._export.state != "done":
                    continue
                export_ref = self._export.ref
            node_id = self._pool.free_node(item.key)
            if node_id is not None:
                self._queue.remove(item)
                self._start(item, node_id, export_ref)

    def _start(self, item: _Queued, node_id: str, export_ref: Any) -> None:
        reservation = self._pool.acquire(node_id, item.key)
        result_ref, artifact_ref = self._trial_fn.options(
            num_cpus=reservation.num_cpus,
            num_gpus=reservation.num_gpus,
            num_returns=2,
            max_retries=0,
            scheduling_strategy=self._affinity(node_id),
            name=f"trial:{item.candidate.label}",
            **self._task_options,
        ).remote(
            self._payload_ref,
            export_ref,
            item.candidate,
            item.hardware,
            node_id,
            item.is_baseline,
            item.prune_above_s,
            reservation.num_cpus,
        )
        deadline = time.monotonic() + self._timeout
        self._running[result_ref] = _Running(item, node_id, deadline, artifact_ref)
        self.stats["trials_started"] += 1

    def _start_export(self, key: str) -> None:
        node_id = self._pool.idle_node(key)
        if node_id is None:
            return  # wait for a node of this type to be idle
        reservation = self._pool.acquire_whole(node_id)
        status_ref, export_ref = self._export_fn.options(
            num_cpus=reservation.num_cpus,
            num_returns=2,
            max_retries=0,
            scheduling_strategy=self._affinity(node_id),
            name="speedster-onnx-export",
            **self._task_options,
        ).remote(self._payload_ref, reservation.num_cpus)
        deadline = time.monotonic() + self._timeout
        self._export = _Export("running", status_ref, export_ref, node_id, deadline)
        self.stats["exports"] += 1

    def _finish_export(self, error: str) -> None:
        self._pool.release(self._export.node_id, None)
        if error:
            logger.warning("shared ONNX export failed, each trial exports for itself: %s", error)
            self._export = replace(self._export, state="done", ref=None, error=error)
        else:
            self._export = replace(self._export, state="done")

    def poll(self, timeout_s: float) -> list[TrialOutcome]:
        self._refresh()
        self._dispatch()
        outcomes, self._finished = self._finished, []
        waitable = list(self._running)
        if self._export.state == "running":
            waitable.append(self._export.status_ref)
        if waitable:
            wait_s = 0 if outcomes else timeout_s
            ready, _ = self._ray.wait(waitable, num_returns=1, timeout=wait_s)
            if ready:  # everything else that is done too, so that freed nodes refill at once
                ready, _ = self._ray.wait(waitable, num_returns=len(waitable), timeout=0)
            for ref in ready:
                outcome = self._collect(ref)
                if outcome is not None:
                    outcomes.append(outcome)
        elif not outcomes and self._queue:
            time.sleep(min(timeout_s, 0.05))  # queued work waits for a node to (re)appear
        outcomes.extend(self._expire())
        self._dispatch()
        outcomes.extend(self._finished)
        self._finished = []
        return outcomes

    def _collect(self, ref: Any) -> TrialOutcome | None:
        if self._export.state == "running" and ref == self._export.status_ref:
            try:
                error: str = self._ray.get(ref)
            except Exception as exc:  # its node died, or it crashed
                error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            self._finish_export(error)
            return None
        running = self._running.pop(ref)
        item = running.queued
        self._pool.release(running.node_id, item.key)
        try:
            result: TrialResult = self._ray.get(ref)
        except Exception as exc:  # worker crash, OOM kill, node death, cancellation
            return self._crashed(running, exc)
        if item.retry_note:
            result = replace(result, extra=(*result.extra, ("retried_after", item.retry_note)))
        if not result.ok:
            return TrialOutcome(result)
        return TrialOutcome(result, self._keep_if_best(result, running.artifact_ref))

    def _keep_if_best(self, result: TrialResult, artifact_ref: Any) -> Any:
        """Fetch the files of a type's best-so-far now, so a node leaving later cannot take
        the winner with it (others stay in the object store until the driver drops them)."""
        assert result.latency is not None
        key = result.candidate.hardware_key
        if result.latency.p50 >= self._best_p50.get(key, math.inf):
            return artifact_ref
        self._best_p50[key] = result.latency.p50
        try:
            saved: SavedCandidate = self._ray.get(artifact_ref)
        except Exception:  # lost already: the driver's fetch reports it
            return artifact_ref
        return saved

    def _is_node_loss(self, exc: Exception, node_id: str) -> bool:
        exceptions = self._ray.exceptions
        if isinstance(exc, exceptions.NodeDiedError | exceptions.TaskUnschedulableError):
            return True
        if node_id in self._dead:
            return True
        if isinstance(exc, exceptions.WorkerCrashedError | exceptions.ObjectLostError):
            self._refresh(force=True)
            return node_id in self._dead
        return False

    def _crashed(self, running: _Running, exc: Exception) -> TrialOutcome | None:
        item = running.queued
        reason = f"{type(exc).__name__}: {str(exc).strip()[-1500:]}"
        if not self._is_node_loss(exc, running.node_id):
            return TrialOutcome(
                failed_result(item.candidate, reason, running.node_id, item.is_baseline)
            )
        first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else reason
        self._node_left(running.node_id, first_line)
        note = f"node {running.node_id[:12]} left the cluster: {first_line}"
        if item.attempt <= self._retries and self._pool.nodes_of(item.key):
            self._queue.appendleft(replace(item, attempt=item.attempt + 1, retry_note=note))
            self.stats["retries"] += 1
            return None
        why = (
            "no other node of this hardware type is left"
            if not self._pool.nodes_of(item.key)
            else f"already retried {self._retries} time(s)"
        )
        self.stats["lost"] += 1
        return TrialOutcome(
            failed_result(item.candidate, f"lost: {note}; {why}", running.node_id, item.is_baseline)
        )

    def _expire(self) -> list[TrialOutcome]:
        now = time.monotonic()
        if self._export.state == "running" and self._export.deadline <= now:
            self._ray.cancel(self._export.status_ref, force=True)
            self._finish_export(f"timed out after {self._timeout:g} s")
        late = [ref for ref, r in self._running.items() if r.deadline <= now]
        return [self._cancel(ref, f"timed out after {self._timeout:g} s") for ref in late]

    def _cancel(self, ref: Any, reason: str) -> TrialOutcome:
        running = self._running.pop(ref)
        self._ray.cancel(ref, force=True)
        self._pool.release(running.node_id, running.queued.key)
        item = running.queued
        return TrialOutcome(
            failed_result(item.candidate, reason, running.node_id, item.is_baseline)
        )

    def in_flight(self) -> int:
        return len(self._running) + len(self._queue) + len(self._finished)

    def cancel_all(self, reason: str) -> list[TrialOutcome]:
        outcomes = [self._cancel(ref, reason) for ref in list(self._running)]
        outcomes += [
            TrialOutcome(failed_result(q.candidate, reason, "", q.is_baseline)) for q in self._queue
        ]
        self._queue.clear()
        outcomes += self._finished
        self._finished = []
        if self._export.state == "running":
            self._ray.cancel(self._export.status_ref, force=True)
            self._finish_export(reason)
        return outcomes

    def fetch(self, artifact: Any) -> SavedCandidate:
        if isinstance(artifact, SavedCandidate):
            return artifact
        saved: SavedCandidate = self._ray.get(artifact)
        return saved


def _probe_key(probe: NodeProbe, hardware: HardwareType) -> str:
    # The catalog was computed under the detected key; a simulated key maps back by device.
    keys = dict(probe.catalogs)
    if hardware.key in keys:
        return hardware.key
    return next(h.key for h in probe.hardware if h.device is hardware.device)
