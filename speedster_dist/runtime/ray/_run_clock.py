"""When a trial task starts *running*, as opposed to when it was submitted.

A task pinned to a node waits there while another driver's trial (a concurrent sweep job)
holds the node's CPUs; that wait must not count against ``trial_timeout``. The task reports
its start, under its own task id, to a small actor of this driver's job (:func:`mark_started`;
the actor holds no CPU and is found by name, so the task's arguments stay as they are); the
executor asks it for the marks between polls (:class:`StartMarks`) and starts the trial's
clock when its mark appears. Ray runs every trial as :func:`started_trial_task`.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from speedster_dist.records import SavedCandidate, TrialResult
from speedster_dist.runtime._task import trial_task

__all__ = ["StartMarks", "mark_started", "started_trial_task"]

# One per driver job: named actors live in the job's namespace, which its tasks share.
_CLOCK_NAME = "speedster-dist-run-clock"
_ASK_TIMEOUT_S = 10.0


class _Clock:
    """The actor: task id -> when the task said it started."""

    def __init__(self) -> None:
        self._marks: dict[str, float] = {}

    def mark(self, key: str, at: float) -> None:
        self._marks[key] = at

    def started(self) -> list[str]:
        return list(self._marks)

    def forget(self, key: str) -> None:
        self._marks.pop(key, None)


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
    return trial_task(*args, **kwargs)


class StartMarks:
    """The driver's side: which submitted trial tasks have started. Created by a
    :class:`~speedster_dist.runtime.ray.RayExecutor` on a connected Ray; every executor of
    the job shares one clock actor (it ends with the job)."""

    def __init__(self) -> None:
        import ray

        clock = ray.remote(num_cpus=0)(_Clock)
        self._clock: Any = clock.options(name=_CLOCK_NAME, get_if_exists=True).remote()

    def key(self, ref: Any) -> str:
        return str(ref.task_id().hex())

    def started(self) -> set[str]:
        import ray

        return set(ray.get(self._clock.started.remote(), timeout=_ASK_TIMEOUT_S))

    def forget(self, key: str) -> None:
        try:
            self._clock.forget.remote(key)
        except Exception:  # the cluster is gone: nothing to clean
            return
