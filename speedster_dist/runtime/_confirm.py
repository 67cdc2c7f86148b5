"""Confirming winners: the baseline and the best candidates of one hardware type re-timed side
by side, on one node, after the search.

A trial's figure was measured once, at some moment of a long search on a machine that may be
busy; the baseline's even earlier. Here every contender is built again (exactly as its trial
built it) and timed in rounds: each round times each of them for a share of a trial's
measurement, in alternating order (forward, then backward), so that a burst of load falls on
all of them alike. The figures are the round medians; timing is :mod:`speedster_dist.measure`'s.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from speedster_dist.backends import BuildConfig, Compiled, device_call, get_backend
from speedster_dist.cache import scratch_dir
from speedster_dist.measure import LoadWatch, MeasureSettings, measure_latency
from speedster_dist.records import (
    Candidate,
    Confirmation,
    ConfirmedLatency,
    DeviceKind,
    HardwareType,
)
from speedster_dist.runtime._shared_export import SharedExport, use_shared_export
from speedster_dist.runtime._task import size_torch_threads
from speedster_dist.runtime._trial import TrialPayload, synchronizer
from speedster_dist.search import DEFAULT_CONFIRM_ROUNDS, DEFAULT_CONFIRM_TOP

__all__ = ["DEFAULT_CONFIRM_ROUNDS", "DEFAULT_CONFIRM_TOP", "confirm_task", "round_settings"]


def round_settings(settings: MeasureSettings, rounds: int, first: bool) -> MeasureSettings:
    """One round's share of a trial's measurement: all rounds together time about as many
    calls, for about as long, as one trial; only the first round warms up in full."""
    min_duration = settings.min_duration_s / rounds
    return MeasureSettings(
        warmup_calls=settings.warmup_calls if first else 1,
        warmup_s=settings.warmup_s if first else 0.0,
        min_calls=max(3, math.ceil(settings.min_calls / rounds)),
        min_duration_s=min_duration,
        max_duration_s=max(settings.max_duration_s / rounds, min_duration),
    )


def _build(payload: TrialPayload, candidate: Candidate, hardware: HardwareType) -> Compiled:
    workdir = scratch_dir("confirm-")
    try:
        config = BuildConfig(
            candidate.precision,
            hardware.device,
            candidate.technique,
            candidate.knob_dict,
            hardware,
        )
        return get_backend(candidate.backend).build(
            payload.source, payload.calibration, config, workdir
        )
    finally:  # what a built model needs stays in memory (as in a trial, timed after its build)
        shutil.rmtree(workdir, ignore_errors=True)


def _caller(compiled: Any, sample: tuple[Any, ...]) -> Callable[[], object]:
    return lambda: compiled(*sample)


def confirm_task(
    payload: TrialPayload,
    export: SharedExport | None,
    hardware: HardwareType,
    node_id: str,
    contenders: Sequence[tuple[Candidate, bool]],
    rounds: int,
    cpus: float | None = None,
) -> Confirmation:
    """Re-time ``contenders`` (candidate, is_baseline) over ``rounds`` alternating rounds.

    Runs where a trial runs (a Ray task on a node of ``hardware``, or in-process) and never
    raises: a build that fails now, or any other error, is the Confirmation's ``reason``.
    """
    size_torch_threads(cpus)
    if export is not None and export.ok:
        with contextlib.suppress(OSError):  # the backends export for themselves, as in a trial
            payload = use_shared_export(payload, export)
    device = hardware.device if hardware is not None else DeviceKind.CPU
    built: list[tuple[Candidate, bool, Any]] = []
    try:
        for candidate, is_baseline in contenders:
            compiled = _build(payload, candidate, hardware)
            timed = device_call(compiled)  # as a trial times it
            built.append((candidate, is_baseline, timed))
        sample = payload.validation[0]
        sync = synchronizer(device)
        medians: list[list[float]] = [[] for _ in built]
        watch = LoadWatch().start()
        for r in range(rounds):
            order = list(range(len(built)))
            for i in order if r % 2 == 0 else order[::-1]:  # forward, backward, forward...
                settings = round_settings(payload.measure, rounds, first=r == 0)
                medians[i].append(measure_latency(_caller(built[i][2], sample), settings, sync).p50)
        load = tuple(watch.stop().items())
    except Exception as exc:  # a contender that no longer builds or runs: not confirmed
        tail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        label = contenders[len(built)][0].label if len(built) < len(contenders) else "timing"
        return Confirmation(hardware.key, (), rounds, node_id, f"{label}: {tail}"[-500:])
    entries = tuple(
        ConfirmedLatency(c, is_baseline, tuple(m))
        for (c, is_baseline, _), m in zip(built, medians, strict=True)
    )
    return Confirmation(hardware.key, entries, rounds, node_id, load=load)
