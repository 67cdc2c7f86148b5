"""The search's one shared ONNX export as a Ray task: idle -> running -> done.

Trials of backends that consume ONNX wait for it (the files:
:mod:`speedster_dist.runtime._shared_export`); it runs on a node of the first such trial's
type with the whole node reserved, and its files stay in the object store. A failed or
timed-out export is *done* without files: each trial then exports for itself, as without
sharing.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

from speedster_dist.runtime._shared_export import SharedExport, make_shared_export
from speedster_dist.runtime._task import size_torch_threads
from speedster_dist.runtime._trial import TrialPayload
from speedster_dist.runtime.ray._node_pool import NodePool

__all__ = ["ExportState", "SharedExportJob"]

logger = logging.getLogger(__name__)


class ExportState(Enum):
    IDLE = "idle"  # nothing asked for the export yet
    RUNNING = "running"  # its task runs on ``node_id``
    DONE = "done"  # finished: ``ref`` holds the files, or None when it failed


def _shared_export_task(payload: TrialPayload, cpus: float) -> tuple[str, SharedExport]:
    size_torch_threads(cpus)
    export = make_shared_export(payload)
    return export.error, export


@dataclass
class SharedExportJob:
    """The export of one search; the executor drives it from its dispatch and poll loop."""

    ray: Any
    affinity: Any
    task_options: dict[str, Any]
    timeout_s: float
    state: ExportState = ExportState.IDLE
    status_ref: Any = None  # small: "" or the error
    ref: Any = None  # the SharedExport itself, never fetched by the driver
    node_id: str = ""
    deadline: float = math.inf
    error: str = ""
    retries: int = 1  # restarts allowed after the export's node left the cluster

    def __post_init__(self) -> None:
        self._task: Any = self.ray.remote(_shared_export_task)

    @property
    def running(self) -> bool:
        return self.state is ExportState.RUNNING

    @property
    def done(self) -> bool:
        return self.state is ExportState.DONE

    def start(self, pool: NodePool, key: str, payload_ref: Any) -> bool:
        """Start on an idle node of ``key``; False when none is idle (try again later)."""
        node_id = pool.idle_node(key)
        if node_id is None:
            return False
        reservation = pool.acquire_whole(node_id)
        self.status_ref, self.ref = self._task.options(
            num_cpus=reservation.num_cpus,
            num_returns=2,
            max_retries=0,
            scheduling_strategy=self.affinity(node_id),
            name="speedster-onnx-export",
            **self.task_options,
        ).remote(payload_ref, reservation.num_cpus)
        self.state, self.node_id = ExportState.RUNNING, node_id
        self.deadline = time.monotonic() + self.timeout_s
        return True

    def collect(self, pool: NodePool) -> Exception | None:
        """The status task finished (or crashed): the export is done, with files or not.
        Returns the exception of a crashed task, for the caller to tell a lost node."""
        crash = None
        try:
            error: str = self.ray.get(self.status_ref)
        except Exception as exc:  # its node died, or it crashed
            crash, error = exc, f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        self._finish(pool, error)
        return crash

    def restart(self) -> bool:
        """Back to idle after the export's node left (a later trial starts it elsewhere);
        False when no restart is left."""
        if self.retries < 1:
            return False
        self.retries -= 1
        self.state, self.ref, self.error = ExportState.IDLE, None, ""
        return True

    def expire(self, pool: NodePool, now: float) -> None:
        if self.running and self.deadline <= now:
            self.ray.cancel(self.status_ref, force=True)
            self._finish(pool, f"timed out after {self.timeout_s:g} s")

    def cancel(self, pool: NodePool, reason: str) -> None:
        if self.running:
            self.ray.cancel(self.status_ref, force=True)
            self._finish(pool, reason)

    def _finish(self, pool: NodePool, error: str) -> None:
        pool.release(self.node_id, None)
        self.state = ExportState.DONE
        if error:
            logger.warning("shared ONNX export failed, each trial exports for itself: %s", error)
            self.ref, self.error = None, error
