"""One trial: build a candidate, check its outputs, time it, keep its files.

This is the body of the Ray task (or of the inline executor in unit tests). Every error a
backend raises becomes a FAILED :class:`TrialResult` with the reason; only a crash of the
process itself (segfault, out of memory) escapes, and the executor records that one.
"""

from __future__ import annotations

import shutil
import statistics
import time
import traceback
from dataclasses import dataclass, field
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
from speedster_dist.measure import (
    LoadWatch,
    MeasureSettings,
    MetricFn,
    measure_latency,
    metric_drop,
    sample_masks,
)
from speedster_dist.records import (
    Candidate,
    DeviceKind,
    HardwareType,
    SavedCandidate,
    TrialResult,
    TrialStatus,
)

__all__ = ["FP32_TOLERANCE", "TrialPayload", "run_trial", "save_compiled", "synchronizer"]

# Full-precision candidates must match the original this closely (numeric precision or the
# user's metric), so that a broken conversion is rejected even when no drop is accepted.
FP32_TOLERANCE = 1e-3
_REASON_CHARS = 2000


@dataclass(frozen=True, kw_only=True)
class TrialPayload:
    """Everything a trial needs; put in the object store once and shared by all trials.

    Built by ``prepare`` (held-in ``calibration`` and held-out ``validation`` samples, the
    original's outputs on the latter) and read by every trial: nothing changes it after.
    """

    source: SourceModel
    calibration: list[tuple[Any, ...]]
    validation: list[tuple[Any, ...]]
    reference_outputs: list[tuple[Any, ...]]
    labels: list[Any] | None = None  # one per validation sample, for the accuracy metric
    metric: MetricFn
    metric_drop_ths: float | None
    measure: MeasureSettings = field(default_factory=MeasureSettings)


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
    masks = sample_masks(payload.source.input_names, payload.validation)
    drop = metric_drop(payload.metric, payload.reference_outputs, outputs, payload.labels, masks)
    limit = max(payload.metric_drop_ths or 0.0, FP32_TOLERANCE)
    if candidate.precision.is_reduced:
        limit = payload.metric_drop_ths or 0.0
    if drop > limit:
        return drop, f"metric drop {drop:.4g} is over the accepted {limit:.4g}"
    return drop, ""


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


PRUNE_MIN_CALLS = 8


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


def _failed(candidate: Candidate, reason: str, **kw: Any) -> TrialResult:
    return TrialResult(candidate, TrialStatus.FAILED, reason[-_REASON_CHARS:] or "failed", **kw)


def _fixed_shapes(compiled: Any, payload: TrialPayload) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """What a candidate built for fixed shapes takes, when the model's axes are dynamic."""
    fixed = getattr(compiled, "fixed_shapes", None)
    if not fixed or not payload.source.dynamic_axes:
        return ()
    return tuple((str(name), tuple(int(d) for d in shape)) for name, shape in fixed.items())


def run_trial(
    payload: TrialPayload,
    candidate: Candidate,
    hardware: HardwareType | None = None,
    node_id: str = "",
    is_baseline: bool = False,
    prune_above_s: float | None = None,
) -> tuple[TrialResult, SavedCandidate | None]:
    """Build, check, time and save ``candidate``; never raises for a backend's error.

    ``prune_above_s``: the best p50 latency known when the trial was scheduled. Timing stops
    early, and the trial is PRUNED, once the running median of at least ``PRUNE_MIN_CALLS``
    calls is over it (the candidate cannot become the winner).
    """
    device = hardware.device if hardware is not None else DeviceKind.CPU
    workdir = scratch_dir("trial-")
    common: dict[str, Any] = {"node_id": node_id, "is_baseline": is_baseline}
    try:
        backend = get_backend(candidate.backend)
        config = BuildConfig(
            candidate.precision, device, candidate.technique, candidate.knob_dict, hardware
        )
        started = time.perf_counter()
        compiled = backend.build(payload.source, payload.calibration, config, workdir)
        common["build_s"] = time.perf_counter() - started
        common["notes"] = build_notes(compiled)  # every later result carries them, rejected too
        drop, rejection = _check_outputs(compiled, payload, candidate)
        common["metric_drop"] = drop
        if rejection:
            return TrialResult(candidate, TrialStatus.REJECTED, rejection, **common), None
        sample = payload.validation[0]
        pruner = _Pruner(prune_above_s)
        # Outputs stay on the device while timed (an ONNX Runtime session on a GPU through
        # IO binding, torch and TensorRT natively); the synchronizer counts the device work.
        timed = device_call(compiled)
        watch = LoadWatch().start()  # the load this measurement saw goes into the history
        latency = measure_latency(
            lambda: timed(*sample), payload.measure, synchronizer(device), pruner.should_stop
        )
        common["extra"] = tuple(watch.stop().items())
        if pruner.pruned:
            reason = f"pruned: median {latency.p50 * 1e3:.3g} ms after {latency.count} calls " + (
                f"cannot beat the best {prune_above_s * 1e3:.3g} ms" if prune_above_s else ""
            )
            return TrialResult(candidate, TrialStatus.PRUNED, reason, latency, **common), None
        saved = save_compiled(compiled, candidate.backend, device, workdir)
        result = TrialResult(
            candidate,
            TrialStatus.COMPLETE,
            latency=latency,
            model_size_mb=saved.size_mb,
            fixed_shapes=_fixed_shapes(compiled, payload),
            **common,
        )
        return result, saved
    except UnsupportedCandidate as exc:
        return _failed(candidate, f"unsupported: {exc}", **common), None
    except Exception as exc:  # any backend error is an outcome, not a crash of the search
        tail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return _failed(candidate, tail, **common), None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
