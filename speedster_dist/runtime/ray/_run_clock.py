"""When a trial task starts *running*, as opposed to when it was submitted.

A task pinned to a node waits there while another driver's trial (a concurrent sweep job)
holds the node's CPUs; that wait must not count against ``trial_timeout``. The task marks
its start in Ray's internal key-value store under its own task id (:func:`mark_started`);
the executor lists the marks between polls (:class:`StartMarks`) and starts the trial's
clock when its mark appears. Ray runs every trial as :func:`started_trial_task`.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from speedster_dist.records import SavedCandidate, TrialResult
from speedster_dist.runtime._task import trial_task

__all__ = ["StartMarks", "mark_started", "started_trial_task"]

_NAMESPACE = "speedster-dist"
_PREFIX = "started:"


def mark_started() -> None:
    """In a Ray task: record that it runs now (never fails the task: without a mark the
    executor counts from submission, as it would anyway)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    try:
        from ray.experimental.internal_kv import _internal_kv_put

        task_id = ray.get_runtime_context().get_task_id()
        if task_id:  # None in a driver (in-process trials)
            _internal_kv_put(_PREFIX + task_id, str(time.time()), namespace=_NAMESPACE)
    except Exception:  # an older Ray without these internals: the timeout is from submission
        return


def started_trial_task(*args: Any, **kwargs: Any) -> tuple[TrialResult, SavedCandidate | None]:
    """:func:`~speedster_dist.runtime._task.trial_task` as a Ray task runs it: its start
    marked first, so that the executor's ``trial_timeout`` runs from now, not from when it
    was submitted."""
    mark_started()
    return trial_task(*args, **kwargs)


class StartMarks:
    """The driver's side: which submitted trial tasks have started."""

    def key(self, ref: Any) -> str:
        return str(ref.task_id().hex())

    def started(self) -> set[str]:
        from ray.experimental.internal_kv import _internal_kv_list

        keys = _internal_kv_list(_PREFIX, namespace=_NAMESPACE)
        return {k.decode()[len(_PREFIX) :] for k in keys}

    def forget(self, key: str) -> None:
        from ray.experimental.internal_kv import _internal_kv_del

        try:
            _internal_kv_del(_PREFIX + key, namespace=_NAMESPACE)
        except Exception:  # the cluster is gone: nothing to clean
            return
