"""When a trial task starts *running*, as opposed to when it was submitted.

A task pinned to a node waits there while another driver's trial (a concurrent sweep job)
holds the node's CPUs; that wait must not count against ``trial_timeout``. The task reports
its start, under its own task id, to a small actor of this driver's job (:func:`mark_started`;
the actor holds no CPU and is found by name, so the task's arguments stay as they are); the
executor asks it for the marks between polls (:class:`StartMarks`) and starts the trial's
clock when its mark appears. Ray runs every trial as :func:`started_trial_task`.

A trial that ran out of memory ends its worker process, as a crash would: its memory (and a
lowered limit, a fragmented heap) must not stay with the next trial. The task leaves its
reason with the same actor first; the executor finds it there when the task's result
reports the dead worker (:meth:`StartMarks.reason`).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from speedster_dist.records import SavedCandidate, TrialResult
from speedster_dist.runtime._task import trial_task
from speedster_dist.runtime._trial import OUT_OF_MEMORY

__all__ = ["StartMarks", "mark_started", "started_trial_task"]

# One per driver job: named actors live in the job's namespace, which its tasks share.
_CLOCK_NAME = "speedster-dist-run-clock"
_ASK_TIMEOUT_S = 10.0
_ENDED_EXIT_CODE = 75  # a worker ended on purpose after its trial ran out of memory


def _clock_class() -> type:
    """The actor's class: task id -> when the task said it started.

    Made here, not at module level, so that Ray ships it by value: the actor's worker then
    never imports this package (whose runtime imports torch: 1.3 s of CPU on 2 cores for an
    actor that keeps two dicts, once per search)."""

    class Clock:
        def __init__(self) -> None:
            self._marks: dict[str, float] = {}
            self._reasons: dict[str, str] = {}

        def mark(self, key: str, at: float) -> None:
            self._marks[key] = at

        def started(self) -> list[str]:
            return list(self._marks)

        def leave_reason(self, key: str, reason: str) -> None:
            self._reasons[key] = reason

        def reason(self, key: str) -> str | None:
            return self._reasons.pop(key, None)

        def forget(self, key: str) -> None:
            self._marks.pop(key, None)

    return Clock


def mark_started() -> None:
    """In a Ray task: report that it runs now (never fails the task: without a mark the
    executor counts from submission, as it would anyway)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    try:
        task_id = ray.get_runtime_context().get_task_id()
        if task_id:  # None in a driver (in-process trials)
            ray.get_actor(_CLOCK_NAME).mark.remote(task_id, time.time())
    except Exception:  # no clock to report to: the timeout runs from submission
        return


def started_trial_task(*args: Any, **kwargs: Any) -> tuple[TrialResult, SavedCandidate | None]:
    """:func:`~speedster_dist.runtime._task.trial_task` as a Ray task runs it: its start
    marked first, so that the executor's ``trial_timeout`` runs from now, not from when it
    was submitted."""
    mark_started()
    result, saved = trial_task(*args, **kwargs)
    if result.reason.startswith(OUT_OF_MEMORY):
        _end_worker(result.reason)
    return result, saved


def _end_worker(reason: str) -> None:
    """Leave ``reason`` with the clock, then end this worker process at once (it never
    takes another task); without a clock to tell, the worker lives and returns the result."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    try:
        task_id = ray.get_runtime_context().get_task_id()
        clock = ray.get_actor(_CLOCK_NAME)
        ended = f"{reason} (its worker process {os.getpid()} was ended)"
        ray.get(clock.leave_reason.remote(task_id, ended), timeout=_ASK_TIMEOUT_S)
    except Exception:  # no clock, or it did not answer: the reason comes back as a result
        return
    os._exit(_ENDED_EXIT_CODE)


# The clock's handle, held for the driver's job: a named actor ends when its last handle goes,
# and an executor's going (a finished search) must not end the clock that the next search of
# the same process finds by name (it would be dying: "all references to the actor were
# removed"). Keyed by job and node: a new ray.init in this process is a new job, whose id a
# new cluster may repeat, on a node whose id it does not.
_held: dict[str, Any] = {}


def _job_key(ray: Any) -> str:
    context = ray.get_runtime_context()
    parts = [str(context.get_job_id())]
    for read in (context.get_node_id, lambda: context.gcs_address):
        try:
            parts.append(str(read()))
        except Exception:  # a Ray Client driver is on no node
            parts.append("")
    return "/".join(parts)


def _job_clock() -> Any:
    import ray

    job = _job_key(ray)
    if job not in _held:
        options: dict[str, Any] = {"name": _CLOCK_NAME, "get_if_exists": True}
        try:  # beside the driver, not on a worker node that may leave mid-search
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = ray.get_runtime_context().get_node_id()
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(here, soft=True)
        except Exception:  # a Ray Client driver is on no node: anywhere will do
            pass
        clock: Any = ray.remote(num_cpus=0)(_clock_class())
        _held.clear()  # an earlier job's clock ended with its job
        _held[job] = clock.options(**options).remote()
    return _held[job]


class StartMarks:
    """The driver's side: which submitted trial tasks have started. Created by a
    :class:`~speedster_dist.runtime.ray.RayExecutor` on a connected Ray; every executor of
    the job shares one clock actor (it ends with the job)."""

    def __init__(self) -> None:
        self._clock: Any = _job_clock()

    def key(self, ref: Any) -> str:
        return str(ref.task_id().hex())

    def started(self) -> set[str]:
        import ray

        return set(ray.get(self._clock.started.remote(), timeout=_ASK_TIMEOUT_S))

    def reason(self, key: str) -> str | None:
        """The reason a task left before ending its worker (its result is then a crash)."""
        import ray

        return ray.get(self._clock.reason.remote(key), timeout=_ASK_TIMEOUT_S)

    def forget(self, key: str) -> None:
        try:
            self._clock.forget.remote(key)
        except Exception:  # the cluster is gone: nothing to clean
            return
