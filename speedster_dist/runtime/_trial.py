"""One trial: build a candidate, check its outputs, time it, keep its files.

This is the body of the Ray task (or of the inline executor in unit tests). Every error a
backend raises becomes a FAILED :class:`TrialResult` with the reason; only a crash of the
process itself (segfault, out of memory) escapes, and the executor records that one.

The candidate's peak memory is watched from before its build to the end of its measurement
(``measure.MemoryWatch``). A candidate with a load point (throughput and cost objectives) is
measured under load (:mod:`._load_trial`), any other one call at a time. A measured point
over the objective's latency budget or memory cap is INFEASIBLE: recorded with its figures,
never kept. A load point whose first requests are already clearly over the latency budget
stops there (``_load_trial.TailGuard``) and is INFEASIBLE too, with the figures so far.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from speedster_dist.backends import (
    BuildConfig,
    Compiled,
    SourceModel,
    UnsupportedCandidate,
    build_notes,
    device_call,
    get_backend,
)
from speedster_dist.cache import scratch_dir
from speedster_dist.measure import LoadWatch, MemoryWatch, measure_latency, overloaded
from speedster_dist.records import (
    Candidate,
    DeviceKind,
    HardwareType,
    LatencyStats,
    SavedCandidate,
    TrialResult,
    TrialStatus,
)
from speedster_dist.runtime._generation_trial import judge_generation, measure_generation
from speedster_dist.runtime._load_trial import (
    LoadPruner,
    TailGuard,
    latency_of,
    measure_point,
    serving_build,
)
from speedster_dist.runtime._payload import (
    FP32_TOLERANCE,
    PRUNE_MIN_CALLS,
    TrialPayload,
    judge_outputs,
)
from speedster_dist.search import infeasibility
from speedster_dist.serving import MemoryUsage, ThroughputStats

__all__ = [
    "FP32_TOLERANCE",
    "OUT_OF_MEMORY",
    "OVERLOADED_NOTE",
    "PRUNE_MIN_CALLS",
    "TrialPayload",
    "run_trial",
    "save_compiled",
    "synchronizer",
]

_REASON_CHARS = 2000


# What the summary prints (once per hardware type) when a trial was timed on a machine whose
# other work did not fit in the cores it left free (``measure.overloaded``).
OVERLOADED_NOTE = (
    "some trials were timed while other work did not fit in the machine's free cores: their "
    "search figures are noisy (the confirmed figures, when there are, are not)"
)


def synchronizer(device: DeviceKind) -> Any:
    """What makes a clock read count the device's queued work (None on CPU)."""
    if device is DeviceKind.GPU:
        import torch

        return torch.cuda.synchronize
    return None


def _check_outputs(
    compiled: Compiled, payload: TrialPayload, candidate: Candidate
) -> tuple[float, str]:
    """The candidate's metric drop on held-out samples and, when over the limit, why."""
    outputs = [tuple(t.detach().cpu() for t in compiled(*sample)) for sample in payload.validation]
    validation, references = payload.validation, payload.reference_outputs
    return judge_outputs(payload, candidate, validation, references, outputs, payload.labels)


def save_compiled(
    compiled: Compiled, backend: str, device: DeviceKind, workdir: Path
) -> SavedCandidate:
    """``compiled``'s files (read into memory) and load options; ``workdir`` is scratch."""
    out = workdir / "saved"
    out.mkdir()
    options = compiled.save(out)
    files = {
        p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
    }
    return SavedCandidate(backend, device.value, dict(options), files)


class _Pruner:
    """Stops timing once the running median is over the bar (called at measurement steps)."""

    def __init__(self, bar_s: float | None) -> None:
        self.bar_s = bar_s
        self.pruned = False

    def should_stop(self, samples: list[float]) -> bool:
        if self.bar_s is None or len(samples) < PRUNE_MIN_CALLS:
            return False
        self.pruned = statistics.median(samples) > self.bar_s
        return self.pruned


# The reason of a trial that ran out of memory starts with this.
OUT_OF_MEMORY = "out of memory"
# What allocators say when they give up (torch's CPU allocator, C++, ONNX Runtime, CUDA).
_ALLOCATION_FAILED = ("can't allocate memory", "bad_alloc", "failed to allocate", "out of memory")


def _out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(mark in text for mark in _ALLOCATION_FAILED)


def _failed(candidate: Candidate, reason: str, **kw: Any) -> TrialResult:
    return TrialResult(candidate, TrialStatus.FAILED, reason[-_REASON_CHARS:] or "failed", **kw)


def _fixed_shapes(compiled: Any, payload: TrialPayload) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """What a candidate built for fixed shapes takes, when the model's axes are dynamic."""
    fixed = getattr(compiled, "fixed_shapes", None)
    if not fixed or not payload.source.dynamic_axes:
        return ()
    return tuple((str(name), tuple(int(d) for d in shape)) for name, shape in fixed.items())


def _verdict(
    candidate: Candidate,
    latency: LatencyStats,
    stats: ThroughputStats | None,
    memory: MemoryUsage,
    payload: TrialPayload,
    common: dict[str, Any],
) -> TrialResult:
    """A measured point: COMPLETE, or INFEASIBLE (over a constraint) with why."""
    why = infeasibility(latency, stats, memory, payload.objective)
    status = TrialStatus.INFEASIBLE if why else TrialStatus.COMPLETE
    return TrialResult(candidate, status, why, latency, throughput=stats, memory=memory, **common)


def _time_calls(
    compiled: Compiled,
    payload: TrialPayload,
    candidate: Candidate,
    device: DeviceKind,
    prune_above_s: float | None,
    common: dict[str, Any],
    watch: MemoryWatch,
) -> TrialResult:
    """The latency objective's measurement: one call at a time on the first held-out
    sample, pruned once its running median is over ``prune_above_s``."""
    sample = payload.validation[0]
    pruner = _Pruner(prune_above_s)
    # Outputs stay on the device while timed (an ONNX Runtime session on a GPU through
    # IO binding, torch and TensorRT natively); the synchronizer counts the device work.
    timed = device_call(compiled)
    load = LoadWatch().start()  # the load this measurement saw goes into the history
    latency = measure_latency(
        lambda: timed(*sample), payload.measure, synchronizer(device), pruner.should_stop
    )
    seen = load.stop()
    common["extra"] = tuple(seen.items())
    if payload.measure.load_check and overloaded(seen, float(os.cpu_count() or 1)):
        # The trial reserved the whole node: any other work that does not fit is noise.
        common["notes"] = (*common.get("notes", ()), OVERLOADED_NOTE)
    memory = watch.stop()
    if pruner.pruned:
        reason = f"pruned: median {latency.p50 * 1e3:.3g} ms after {latency.count} calls " + (
            f"cannot beat the best {prune_above_s * 1e3:.3g} ms" if prune_above_s else ""
        )
        return TrialResult(candidate, TrialStatus.PRUNED, reason, latency, memory=memory, **common)
    return _verdict(candidate, latency, None, memory, payload, common)


def _serve_load(
    compiled: Compiled,
    batch: tuple[Any, ...],
    payload: TrialPayload,
    candidate: Candidate,
    prune_above_s: float | None,
    common: dict[str, Any],
    watch: MemoryWatch,
) -> TrialResult:
    """A throughput or cost objective's measurement: the candidate's load point."""
    point = candidate.load_point
    assert point is not None
    pruner = LoadPruner(prune_above_s)
    budget = payload.objective.latency_budget_ms
    guard = TailGuard(None if budget is None else budget / 1e3, payload.objective.percentile)
    stats = measure_point(compiled, batch, point, payload, watch, pruner, guard)
    common["extra"] = stats.load
    latency = latency_of(stats)
    if guard.stopped:  # clearly over the budget: infeasible, with the figures so far
        why = infeasibility(latency, stats, stats.memory, payload.objective)
        reason = f"{why} ({guard.reason})" if why else guard.reason
        return TrialResult(
            candidate,
            TrialStatus.INFEASIBLE,
            reason,
            latency,
            throughput=stats,
            memory=stats.memory,
            **common,
        )
    if pruner.pruned:
        reason = (
            f"pruned: {pruner.rate:.4g} requests/s after {stats.calls} calls cannot beat the "
            f"best {1.0 / (prune_above_s or 1.0):.4g} requests/s"
        )
        return TrialResult(
            candidate,
            TrialStatus.PRUNED,
            reason,
            latency,
            throughput=stats,
            memory=stats.memory,
            **common,
        )
    return _verdict(candidate, latency, stats, stats.memory, payload, common)


def run_trial(
    payload: TrialPayload,
    candidate: Candidate,
    hardware: HardwareType | None = None,
    node_id: str = "",
    is_baseline: bool = False,
    prune_above_s: float | None = None,
) -> tuple[TrialResult, SavedCandidate | None]:
    """Build, check, time and save ``candidate``; never raises for a backend's error.

    ``prune_above_s``: the best value known when the trial was scheduled (one call's p50, or
    for a load point seconds per request). Timing stops early, and the trial is PRUNED, once
    the running median of at least ``PRUNE_MIN_CALLS`` calls (for a load point, the rate of
    the calls finished so far) is over it: the candidate cannot become the winner.
    """
    device = hardware.device if hardware is not None else DeviceKind.CPU
    workdir = scratch_dir("trial-")
    common: dict[str, Any] = {"node_id": node_id, "is_baseline": is_baseline}
    watch = MemoryWatch().start()  # before the build: the candidate's whole footprint
    try:
        backend = get_backend(candidate.backend)
        config = BuildConfig(
            candidate.precision, device, candidate.technique, candidate.knob_dict, hardware
        )

        def build(source: SourceModel, folder: Path = workdir) -> Compiled:
            folder.mkdir(exist_ok=True)
            return backend.build(source, payload.calibration, config, folder)

        started = time.perf_counter()
        compiled = build(payload.source)
        common["build_s"] = time.perf_counter() - started
        common["notes"] = build_notes(compiled)  # every later result carries them, rejected too
        generating = payload.reference_tokens is not None  # a generation search
        if generating:
            drop, rejection, agreement, cosine = judge_generation(compiled, payload, candidate)
        else:
            drop, rejection = _check_outputs(compiled, payload, candidate)
        common["metric_drop"] = drop
        batch: tuple[Any, ...] = ()
        if not rejection and candidate.load_point is not None:
            compiled, batch, rejection = serving_build(
                lambda source: build(source, workdir / "batch"), payload, candidate, compiled
            )
        if rejection:
            return TrialResult(candidate, TrialStatus.REJECTED, rejection, **common), None
        if candidate.load_point is not None:
            result = _serve_load(compiled, batch, payload, candidate, prune_above_s, common, watch)
        else:
            result = _time_calls(compiled, payload, candidate, device, prune_above_s, common, watch)
        if not result.ok:
            return result, None
        if generating:  # tokens/s, TTFT, TPOT besides the whole generation's latency
            stats = measure_generation(compiled, payload, agreement, cosine)
            result = replace(result, generation=stats)
        saved = save_compiled(compiled, candidate.backend, device, workdir)
        result = replace(
            result, model_size_mb=saved.size_mb, fixed_shapes=_fixed_shapes(compiled, payload)
        )
        if result.generation is not None:  # the weights are what its saved files hold
            result = replace(result, generation=replace(result.generation, weight_mb=saved.size_mb))
        return result, saved
    except UnsupportedCandidate as exc:
        return _failed(candidate, f"unsupported: {exc}", **common), None
    except Exception as exc:  # any backend error is an outcome, not a crash of the search
        tail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if _out_of_memory(exc):  # a Ray worker then ends (the next trial gets a fresh one)
            tail = f"{OUT_OF_MEMORY}: {tail}"
        return _failed(candidate, tail, **common), None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
