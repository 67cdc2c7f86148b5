"""Confirming winners: the baseline and the best candidates of one hardware type re-timed side
by side, on one node, after the search.

A trial's figure was measured once, at some moment of a long search on a machine that may be
busy; the baseline's even earlier. Here every contender is built again (exactly as its trial
built it), each in a fresh process of its own (:mod:`._fresh_worker`: nothing another
contender left behind slows it), and timed in rounds: each round times each of them for a
share of a trial's measurement, in alternating order (forward, then backward), so that a burst
of load falls on all of them alike. A round in which the machine had more work than cores
(:func:`speedster_dist.measure.overloaded`) is timed again, up to ``rounds`` more times in
all; if one stays so, the confirmation is not usable and says why (its figures are never
quoted). The figures are the round medians; timing is :mod:`speedster_dist.measure`'s.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from speedster_dist.measure import MeasureSettings, overloaded
from speedster_dist.records import (
    Candidate,
    Confirmation,
    ConfirmedLatency,
    HardwareType,
)
from speedster_dist.runtime._fresh_worker import FreshWorker, RoundTiming, WorkerError
from speedster_dist.runtime._shared_export import SharedExport, use_shared_export
from speedster_dist.runtime._trial import TrialPayload
from speedster_dist.search import DEFAULT_CONFIRM_ROUNDS, DEFAULT_CONFIRM_TOP

__all__ = [
    "DEFAULT_CONFIRM_ROUNDS",
    "DEFAULT_CONFIRM_TOP",
    "confirm_task",
    "round_settings",
]


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
        load_check=settings.load_check,
    )


def _time_round(worker: FreshWorker, settings: MeasureSettings) -> RoundTiming:
    """One round of one contender, in its process (one place, so tests can watch the order)."""
    return worker.time_round(settings)


@dataclass
class _Rounds:
    """The kept rounds' medians per contender, the load each kept round saw, and the noise."""

    medians: list[list[float]]
    loads: list[dict[str, float]] = field(default_factory=list)
    repeated: int = 0
    noisy: list[str] = field(default_factory=list)  # why each kept noisy round was noisy


def _time_rounds(
    workers: Sequence[FreshWorker], measure: MeasureSettings, rounds: int, cores: float
) -> _Rounds:
    """``rounds`` alternating rounds; a round the machine was overloaded in is timed again
    while fewer than ``rounds`` repeats were spent, else kept and marked noisy."""
    done = _Rounds([[] for _ in workers])
    r = 0
    while r < rounds:
        settings = round_settings(measure, rounds, first=r == 0 and done.repeated == 0)
        order = list(range(len(workers)))
        timings: dict[int, RoundTiming] = {}
        for i in order if r % 2 == 0 else order[::-1]:  # forward, backward, forward...
            timings[i] = _time_round(workers[i], settings)
        why = (
            next((w for t in timings.values() if (w := overloaded(t.load, cores))), "")
            if measure.load_check
            else ""
        )
        if why and done.repeated < rounds:
            done.repeated += 1
            continue
        if why:
            done.noisy.append(f"round {r + 1}: {why}")
        for i, timing in timings.items():
            done.medians[i].append(timing.p50)
        done.loads.extend(t.load for t in timings.values())
        r += 1
    return done


def _worst_load(loads: Sequence[dict[str, float]]) -> tuple[tuple[str, float], ...]:
    """The rounds' load in one reading: the load average before the first and after the last
    round, and the highest shares of any round."""
    if not loads:
        return ()
    merged = dict(loads[0])
    for load in loads[1:]:
        for key, value in load.items():
            late = key == "loadavg_after"
            merged[key] = value if late else max(merged.get(key, value), value)
    if "loadavg_before" in loads[0]:
        merged["loadavg_before"] = loads[0]["loadavg_before"]
    return tuple(merged.items())


def _start_workers(
    payload: TrialPayload,
    contenders: Sequence[tuple[Candidate, bool]],
    hardware: HardwareType,
    cpus: float | None,
    workers: list[FreshWorker],
) -> None:
    """One fresh process per contender, built one after another (a build's memory peak, a
    quantizer's for one, is not paid several times at once); returns when all are built."""
    for candidate, _ in contenders:
        worker = FreshWorker()
        workers.append(worker)
        worker.start(payload, candidate, hardware, cpus)
        try:
            worker.ready()
        except WorkerError as exc:
            raise WorkerError(f"{candidate.label}: {exc}") from exc


def confirm_task(
    payload: TrialPayload,
    export: SharedExport | None,
    hardware: HardwareType,
    node_id: str,
    contenders: Sequence[tuple[Candidate, bool]],
    rounds: int,
    cpus: float | None = None,
) -> Confirmation:
    """Re-time ``contenders`` (candidate, is_baseline) over ``rounds`` alternating rounds,
    each contender in a fresh process of its own.

    Runs where a trial runs (a Ray task on a node of ``hardware``, or in-process) and never
    raises: a build that fails now, a contender's process that dies, or a round that stayed
    overloaded is the Confirmation's ``reason``.
    """
    if export is not None and export.ok:
        with contextlib.suppress(OSError):  # the backends export for themselves, as in a trial
            payload = use_shared_export(payload, export)
    workers: list[FreshWorker] = []
    cores = cpus if cpus is not None else float(os.cpu_count() or 1)
    try:
        _start_workers(payload, contenders, hardware, cpus, workers)
        done = _time_rounds(workers, payload.measure, rounds, cores)
    except Exception as exc:  # a contender that no longer builds or runs: not confirmed
        why = str(exc) if isinstance(exc, WorkerError) else f"{type(exc).__name__}: {exc}"
        return Confirmation(hardware.key, (), rounds, node_id, why[-500:])
    finally:
        for worker in workers:
            worker.close()
    entries = tuple(
        ConfirmedLatency(c, is_baseline, tuple(m), w.pid)
        for (c, is_baseline), m, w in zip(contenders, done.medians, workers, strict=True)
    )
    reason = ""
    if done.noisy:
        reason = (
            f"the machine was overloaded in {len(done.noisy)} of {rounds} rounds after "
            f"{done.repeated} repeat(s) ({done.noisy[0]}): its figures are not quoted"
        )
    load = _worst_load(done.loads)
    return Confirmation(
        hardware.key, entries, rounds, node_id, reason, load, repeated=done.repeated
    )
