"""Trials as Ray tasks: a queue, placement on free nodes, collection, crashes and timeouts.

Where a trial may run is :class:`~._node_pool.NodePool`'s rule (one trial measuring per node
or GPU); which nodes exist is :class:`~._membership.ClusterMembership`'s; the shared ONNX
export is :class:`~._shared_export_job.SharedExportJob`'s; when a trial's time starts is the
run clock's (:mod:`._run_clock`). This module turns a crashed or cancelled
task into a FAILED result, and retries a trial whose node died.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from speedster_dist.records import (
    Candidate,
    Confirmation,
    HardwareType,
    SavedCandidate,
    TrialResult,
)
from speedster_dist.runtime._confirm import confirm_task
from speedster_dist.runtime._node_groups import declared_groups
from speedster_dist.runtime._protocol import Executor, HardwareGroup, TrialOutcome, failed_result
from speedster_dist.runtime._shared_export import consumes_onnx
from speedster_dist.runtime._trial import TrialPayload
from speedster_dist.runtime.ray._group_demand import GroupDemand, Request, ray_request
from speedster_dist.runtime.ray._in_flight import QUEUE_LIMIT_FACTOR, Queued, Running
from speedster_dist.runtime.ray._membership import ClusterMembership
from speedster_dist.runtime.ray._run_clock import StartMarks, started_trial_task
from speedster_dist.runtime.ray._shared_export_job import ExportState, SharedExportJob
from speedster_dist.search import DEFAULT_GROUP_WAIT_S

__all__ = ["RayExecutor"]


class RayExecutor(Executor):
    """Runs each trial as a Ray task pinned to one free node of the trial's hardware type.

    A CPU trial reserves every CPU of its node (a GPU trial one GPU and its share of the
    CPUs), so nothing else Ray schedules shares its cores while it measures. Nodes that
    join are probed and used (a new hardware type is reported by :meth:`joined`), nodes that
    left are dropped. A trial whose node dies is retried on another node of its type (up to
    ``node_loss_retries`` times), else recorded as lost with the reason; any other crash is
    an outcome, never retried. A trial past ``trial_timeout_s`` is force-cancelled and its
    node freed; the time counts from when the task starts running on its node (a mark it
    leaves in Ray's key-value store), not from submission, so time queued behind another
    driver's trial does not count. ``runtime_env`` is given to every task (URIs, ``pip``,
    ``env_vars``...;
    local folders such as :func:`speedster_dist.runtime.ray.package_runtime_env` are only
    uploaded at the job level, through :func:`speedster_dist.runtime.ray.connect`).
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
        real_ray = ray_api is None  # a stand-in gets its own probe cache
        if ray_api is None:
            import ray
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            ray_api, affinity_cls = ray, NodeAffinitySchedulingStrategy
        else:  # a stand-in for tests: it provides NodeAffinitySchedulingStrategy itself
            affinity_cls = ray_api.NodeAffinitySchedulingStrategy
        self._ray: Any = ray_api  # Ray's stubs do not type .options(num_returns=2) results
        # A stand-in may simulate start marks; without them the clock runs from submission.
        self._marks: Any = StartMarks() if real_ray else getattr(ray_api, "start_marks", None)
        self._timeout = trial_timeout_s
        self._retries = node_loss_retries
        self._task_options: dict[str, Any] = {"runtime_env": runtime_env} if runtime_env else {}
        self._share_exports = share_exports
        self.stats: Counter[str] = Counter()

        def affinity(node_id: str) -> Any:
            return affinity_cls(node_id, soft=False)

        self._affinity = affinity
        self.membership = ClusterMembership(
            ray_api,
            affinity,
            self._task_options,
            json.dumps(runtime_env or {}, sort_keys=True, default=str),
            shared_cache=real_ray,
            refresh_s=refresh_s,
            probe_timeout_s=probe_timeout_s,
            stats=self.stats,
        )
        self._pool = self.membership.pool
        self._trial_fn: Any = ray_api.remote(started_trial_task)
        # A GPU trial gets a fresh worker process (Ray's max_calls=1, which it applies only
        # when the GPU is asked for in the decorator): no CUDA context, memory pool or device
        # choice of an earlier trial sticks to the next one.
        self._gpu_trial_fn: Any = ray_api.remote(num_gpus=1, max_calls=1)(started_trial_task)
        # A confirmation starts in a fresh worker too, and each contender in a fresh process.
        self._confirm_fn: Any = ray_api.remote(max_calls=1)(confirm_task)
        self._gpu_confirm_fn: Any = ray_api.remote(num_gpus=1, max_calls=1)(confirm_task)
        self._export = SharedExportJob(ray_api, affinity, self._task_options, trial_timeout_s)
        self._payload_ref: Any = None
        self._exportable = False
        self._queue: deque[Queued] = deque()
        self._running: dict[Any, Running] = {}
        self._finished: list[TrialOutcome] = []  # decided without running (lost types)
        self._best_p50: dict[str, float] = {}

    # -- the cluster (delegated) -----------------------------------------------------
    def discover(self) -> list[HardwareGroup]:
        return self.membership.discover()

    def joined(self) -> list[HardwareGroup]:
        return self.membership.joined()

    def lost_types(self) -> dict[str, str]:
        return self.membership.lost_types()

    def node_groups(self) -> dict[str, str]:
        return dict(self.membership.node_groups)

    def group_demand(
        self,
        node_groups: Sequence[str] | str | None = None,
        wait_s: float = DEFAULT_GROUP_WAIT_S,
        request: Request | None = None,
    ) -> GroupDemand:
        """Demand for the declared node groups (:mod:`._group_demand`), for ``run_search``;
        ``request`` replaces Ray's autoscaler request (a simulated autoscaler in tests)."""
        groups = declared_groups(node_groups, self._ray.nodes())
        send = request or ray_request(self._ray)
        return GroupDemand(groups, send, self._ray.nodes, self._pool.node_ids, wait_s)

    # -- running ---------------------------------------------------------------------
    def prepare(self, payload: TrialPayload) -> None:
        self._payload_ref = self._ray.put(payload)
        self._exportable = payload.source.module is not None and payload.source.onnx_path is None

    def has_capacity(self, hardware_key: str) -> bool:
        self.membership.refresh()
        waiting = sum(1 for q in self._queue if q.key == hardware_key)
        return self._pool.free_count(hardware_key) > waiting

    def submit(
        self,
        candidate: Candidate,
        hardware: HardwareType,
        is_baseline: bool,
        prune_above_s: float | None = None,
    ) -> None:
        self._queue.append(Queued(candidate, hardware, is_baseline, prune_above_s))
        self._dispatch()

    def _needs_export(self, item: Queued) -> bool:
        if not (self._share_exports and self._exportable):
            return False
        group = self.membership.group(item.key)
        catalog = group.catalog if group is not None else ()
        info = next((i for i in catalog if i.name == item.candidate.backend), None)
        return info is not None and consumes_onnx(info)

    def _dispatch(self) -> None:
        """Start queued trials on free nodes, in submission order (retries first)."""
        for item in list(self._queue):
            if not self._pool.nodes_of(item.key):
                self._queue.remove(item)
                reason = f"lost: {self.membership.lost_reason(item.key)}"
                self._finished.append(
                    TrialOutcome(failed_result(item.candidate, reason, "", item.is_baseline))
                )
                continue
            export_ref = None
            if self._needs_export(item):
                idle = self._export.state is ExportState.IDLE
                if idle and self._export.start(self._pool, item.key, self._payload_ref):
                    self.stats["exports"] += 1
                if not self._export.done:
                    continue
                export_ref = self._export.ref
            node_id = self._pool.free_node(item.key)
            if node_id is not None:
                self._queue.remove(item)
                self._start(item, node_id, export_ref)

    def _start(self, item: Queued, node_id: str, export_ref: Any) -> None:
        reservation = self._pool.acquire(node_id, item.key)
        function = self._gpu_trial_fn if reservation.num_gpus else self._trial_fn
        result_ref, artifact_ref = function.options(
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
        mark = self._marks.key(result_ref) if self._marks is not None else ""
        limit = self._timeout * (QUEUE_LIMIT_FACTOR if mark else 1.0)
        deadline = time.monotonic() + limit
        self._running[result_ref] = Running(item, node_id, deadline, artifact_ref, mark)
        self.stats["trials_started"] += 1

    def poll(self, timeout_s: float) -> list[TrialOutcome]:
        self.membership.refresh()
        self._dispatch()
        outcomes, self._finished = self._finished, []
        waitable = list(self._running)
        if self._export.running:
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
        if self._export.running and ref == self._export.status_ref:
            node_id = self._export.node_id
            crash = self._export.collect(self._pool)
            if crash is not None and self._is_node_loss(crash, node_id) and self._export.restart():
                self.membership.node_left(node_id, f"the shared export's task: {crash}"[:200])
            return None
        running = self._running.pop(ref)
        self._forget_mark(running)
        item = running.queued
        self._pool.release(running.node_id, item.key)
        try:
            result: TrialResult = self._ray.get(ref)
        except Exception as exc:  # worker crash, OOM kill, node death, cancellation
            return self._crashed(running, self._left_reason(ref) or exc)
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
        if self.membership.is_dead(node_id):
            return True
        if isinstance(exc, exceptions.WorkerCrashedError | exceptions.ObjectLostError):
            self.membership.refresh(force=True)
            return self.membership.is_dead(node_id)
        return False

    def _left_reason(self, ref: Any) -> str | None:
        """What the trial said before it ended its worker (out of memory), if anything."""
        reason = getattr(self._marks, "reason", None)
        try:
            return reason(self._marks.key(ref)) if reason is not None else None
        except Exception:  # the clock is unreachable: the crash speaks for itself
            return None

    def _crashed(self, running: Running, exc: Exception | str) -> TrialOutcome | None:
        item = running.queued
        if isinstance(exc, str):  # the worker ended on purpose, and said why
            return TrialOutcome(
                failed_result(item.candidate, exc, running.node_id, item.is_baseline)
            )
        reason = f"{type(exc).__name__}: {str(exc).strip()[-1500:]}"
        if not self._is_node_loss(exc, running.node_id):
            return TrialOutcome(
                failed_result(item.candidate, reason, running.node_id, item.is_baseline)
            )
        first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else reason
        self.membership.node_left(running.node_id, first_line)
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
        self._export.expire(self._pool, now)
        self._note_starts(now)
        late = [ref for ref, r in self._running.items() if r.deadline <= now]
        return [self._cancel(ref, self._late_reason(self._running[ref])) for ref in late]

    def _note_starts(self, now: float) -> None:
        """Start the clock of each trial whose task began running since the last poll."""
        waiting = [r for r in self._running.values() if r.mark]
        if not waiting:
            return
        try:
            started = self._marks.started()
        except Exception:  # marks unreadable: keep counting from submission
            started = {r.mark for r in waiting}
        for running in waiting:
            if running.mark in started:
                self._forget_mark(running)
                running.deadline = now + self._timeout

    def _forget_mark(self, running: Running) -> None:
        if running.mark:
            self._marks.forget(running.mark)
            running.mark = ""

    def _late_reason(self, running: Running) -> str:
        if running.mark:  # never started: its node stayed busy with other work
            return (
                f"did not start within {self._timeout * QUEUE_LIMIT_FACTOR:g} s "
                "(its node stayed busy with other work)"
            )
        return f"timed out after {self._timeout:g} s"

    def _cancel(self, ref: Any, reason: str) -> TrialOutcome:
        running = self._running.pop(ref)
        self._forget_mark(running)
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
        self._export.cancel(self._pool, reason)
        return outcomes

    def fetch(self, artifact: Any) -> SavedCandidate:
        if isinstance(artifact, SavedCandidate):
            return artifact
        saved: SavedCandidate = self._ray.get(artifact)
        return saved

    def confirm(
        self, hardware: HardwareType, contenders: Sequence[tuple[Candidate, bool]], rounds: int
    ) -> Confirmation:
        """Re-time ``contenders`` side by side from one task (a fresh worker, which starts a
        fresh process per contender) on a free node of ``hardware``, reserved as a trial
        reserves it (after the search: every node is free again); a crash, a lost node or
        the trial timeout is the Confirmation's ``reason``."""
        key = hardware.key
        self.membership.refresh()
        node_id = self._pool.free_node(key)
        if node_id is None:
            return Confirmation(key, (), rounds, "", "no node of this hardware type is free")
        reservation = self._pool.acquire(node_id, key)
        export_ref = self._export.ref if self._share_exports and self._export.done else None
        function = self._gpu_confirm_fn if reservation.num_gpus else self._confirm_fn
        try:
            ref = function.options(
                num_cpus=reservation.num_cpus,
                num_gpus=reservation.num_gpus,
                max_retries=0,
                scheduling_strategy=self._affinity(node_id),
                name=f"confirm:{key}",
                **self._task_options,
            ).remote(
                self._payload_ref,
                export_ref,
                hardware,
                node_id,
                tuple(contenders),
                rounds,
                reservation.num_cpus,
            )
            ready, _ = self._ray.wait([ref], num_returns=1, timeout=self._timeout)
            if not ready:
                self._ray.cancel(ref, force=True)
                return Confirmation(
                    key, (), rounds, node_id, f"timed out after {self._timeout:g} s"
                )
            confirmation: Confirmation = self._ray.get(ref)
            return confirmation
        except Exception as exc:  # the worker crashed, the node left...
            return Confirmation(key, (), rounds, node_id, f"{type(exc).__name__}: {exc}"[:500])
        finally:
            self._pool.release(node_id, key)
