"""The body of a trial task, around :func:`run_trial`: shared export in, timestamps out.

Executor-agnostic: the in-process executor calls it as it is, the Ray executor through
:func:`speedster_dist.runtime.ray._run_clock.started_trial_task` (which marks the start).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from speedster_dist.records import Candidate, HardwareType, SavedCandidate, TrialResult
from speedster_dist.runtime._shared_export import SharedExport, use_shared_export
from speedster_dist.runtime._trial import TrialPayload, run_trial

__all__ = ["size_torch_threads", "trial_task"]


def size_torch_threads(cpus: float | None) -> int:
    """Size torch's intra-op thread pool to the CPUs this task reserved (None: leave it);
    returns the pool's size, recorded with the trial.

    Ray reuses worker processes, and torch sizes its pool once per process from
    OMP_NUM_THREADS as it was at that moment: a worker whose first task reserved no CPU (the
    node probe, where Ray sets OMP_NUM_THREADS=1) would run every later trial's torch
    candidates, and time them, on one thread of a node reserved whole.
    """
    import torch

    if cpus is not None and cpus >= 1 and torch.get_num_threads() != int(cpus):
        torch.set_num_threads(int(cpus))
    return torch.get_num_threads()


def trial_task(
    payload: TrialPayload,
    export: SharedExport | None,
    candidate: Candidate,
    hardware: HardwareType,
    node_id: str,
    is_baseline: bool,
    prune_above_s: float | None,
    cpus: float | None = None,
) -> tuple[TrialResult, SavedCandidate | None]:
    """Run one trial on this node and stamp when it started and ended (node clock).

    Called by the executors, in a Ray task or in-process. ``export``: the search's shared
    ONNX export, for backends that consume ONNX (None for the others). ``cpus``: the CPUs
    the task reserved, which torch's thread pool is sized to (None in-process: unchanged).
    """
    started = time.time()
    extra: list[tuple[str, Any]] = [("torch_threads", size_torch_threads(cpus))]
    if export is not None and export.ok:
        try:
            payload = use_shared_export(payload, export)
            extra.append(("onnx_export", f"shared:{export.key}"))
        except OSError as exc:  # the backend exports for itself, as without sharing
            extra.append(("onnx_export", f"own: the shared export is unusable here ({exc})"))
    result, saved = run_trial(payload, candidate, hardware, node_id, is_baseline, prune_above_s)
    stamped = replace(
        result, extra=(*result.extra, *extra), started_at=started, finished_at=time.time()
    )
    return stamped, saved
