"""Does a call release Python's GIL? Measured, because threads only overlap where it does.

A worker thread makes ``calls`` calls while this thread counts ticks (each tick reads the clock
and yields the GIL with ``sleep(0)``). A tick can only run while the worker does not hold the
GIL, so the ticks counted inside the worker's window, times the period of a tick measured
alone just before, estimate the share of the window in which another Python thread could run.
The interpreter's switch interval is raised to one second meanwhile (and restored), so that
the worker is not forced off the GIL every 5 ms: a call that holds the GIL then shows ~0.

The share is a lower bound on a loaded machine (the ticking thread also waits for a CPU);
``ONNX Runtime``'s ``run`` and most torch kernels release the GIL, the Python between torch
ops does not.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RELEASED_SHARE", "GilRelease", "gil_release"]

_CALIBRATION_S = 0.02
RELEASED_SHARE = 0.25
_MAX_CALLS = 10_000


@dataclass(frozen=True)
class GilRelease:
    """``free_share``: estimated share of the calls' window during which another Python thread
    ran (0: the call holds the GIL throughout; ~1: it releases it); ``ticks`` counted there."""

    free_share: float
    ticks: int
    calls: int
    window_s: float

    @property
    def released(self) -> bool:
        """True when another thread could run for at least a quarter of the calls' time: a
        call that holds the GIL measures ~0, one that releases it 0.5-1 on this shared
        2-core machine (the share is a lower bound where CPUs are busy)."""
        return self.free_share >= RELEASED_SHARE


def _tick_period() -> float:
    """Seconds per tick with nothing else running (the same loop as :func:`gil_release`)."""
    ticks: list[float] = []
    end = time.perf_counter() + _CALIBRATION_S
    while not ticks or ticks[-1] < end:
        ticks.append(time.perf_counter())
        time.sleep(0)
    return (ticks[-1] - ticks[0]) / max(len(ticks) - 1, 1)


def _calls_for(call: Callable[[], object], min_calls: int, min_window_s: float) -> int:
    call()  # a warm-up: first calls are often slow
    started = time.perf_counter()
    call()
    one = max(time.perf_counter() - started, 1e-6)
    return min(max(min_calls, math.ceil(min_window_s / one)), _MAX_CALLS)


def gil_release(
    call: Callable[[], object], min_calls: int = 5, min_window_s: float = 0.05
) -> GilRelease:
    """Measure how much of ``call`` leaves the GIL free (see the module docstring)."""
    calls = _calls_for(call, min_calls, min_window_s)
    period = _tick_period()
    window: list[float] = []
    errors: list[BaseException] = []

    def work() -> None:
        window.append(time.perf_counter())
        try:
            for _ in range(calls):
                call()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
        window.append(time.perf_counter())

    ticks: list[float] = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    try:
        worker = threading.Thread(target=work, name="speedster-gil-probe", daemon=True)
        worker.start()
        while worker.is_alive():
            ticks.append(time.perf_counter())
            time.sleep(0)
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    if errors:
        raise errors[0]
    start, end = window
    inside = sum(1 for t in ticks if start < t < end)
    span = max(end - start, 1e-9)
    return GilRelease(round(min(inside * period / span, 1.0), 3), inside, calls, span)
