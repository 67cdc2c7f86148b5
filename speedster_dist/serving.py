"""Serving many requests: what a load point is, what its measurement found, and how a
backend keeps several requests in flight.

A leaf like :mod:`speedster_dist.records` (standard library only), so that ``backends``
(which run requests), ``measure`` (which times them) and ``search`` (which picks points) share
one definition. Every record here is frozen, picklable and validated in ``__post_init__``
without side effects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "NOISY_OTHERS_SHARE",
    "Done",
    "LoadPoint",
    "MemoryUsage",
    "Overlap",
    "Runner",
    "ThroughputStats",
]

# A point measured while other processes used more than this share of the machine's CPUs
# (``others_cpu_share`` of measure's LoadWatch) is marked noisy.
NOISY_OTHERS_SHARE = 0.25


def _whole(name: str, value: Any) -> int:
    """``value`` as an integer >= 1, or a ValueError that says what was wrong."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if not whole or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def _finite(name: str, value: Any, low: float = 0.0) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < low:
        raise ValueError(f"{name} must be a finite number >= {low}, got {value!r}")


@dataclass(frozen=True)
class LoadPoint:
    """One way of serving: ``batch_size`` requests per call, ``concurrency`` calls in flight,
    and the candidate's ``knobs`` (sorted ``(name, value)`` pairs; a mapping is accepted)."""

    batch_size: int
    concurrency: int
    knobs: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        _whole("batch_size (requests per call)", self.batch_size)
        _whole("concurrency (calls in flight)", self.concurrency)
        knobs = self.knobs
        pairs = sorted(
            knobs.items() if isinstance(knobs, Mapping) else knobs, key=lambda kv: str(kv[0])
        )
        for name, value in pairs:
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"knob {name!r} must be finite, got {value!r}")
        object.__setattr__(self, "knobs", tuple((str(k), v) for k, v in pairs))

    @classmethod
    def make(
        cls, batch_size: int, concurrency: int, knobs: Mapping[str, Any] | None = None
    ) -> LoadPoint:
        return cls(batch_size, concurrency, tuple((knobs or {}).items()))

    @property
    def label(self) -> str:
        knobs = "".join(f" {k}={v}" for k, v in self.knobs)
        return f"batch {self.batch_size} x {self.concurrency} in flight{knobs}"


@dataclass(frozen=True)
class Overlap:
    """How a runner keeps requests in flight, declared by the backend as data.

    ``mechanism`` names the API (``"openvino AsyncInferQueue"``, ``"threads"``,
    ``"cuda streams"``); ``overlaps`` is True when requests in flight really execute at the
    same time (native asynchronous API, or threads whose calls release the GIL); ``note``
    says why, or what serializes them.
    """

    mechanism: str
    overlaps: bool
    note: str = ""

    def __post_init__(self) -> None:
        if not self.mechanism:
            raise ValueError("an overlap declaration needs the mechanism's name")


Done = Callable[[Any, "BaseException | None"], None]


@runtime_checkable
class Runner(Protocol):
    """Requests in flight through a backend's own asynchronous API (or threads).

    Made by a compiled model's optional ``runner(concurrency)`` (see
    ``speedster_dist.backends.runner_for``); driven by ``measure.measure_load``, which never
    has more than ``concurrency`` requests in flight. A runner never times anything.
    """

    overlap: Overlap

    def submit(self, inputs: tuple[Any, ...], done: Done) -> None:
        """Start one call on ``inputs`` and return without waiting for it (it may wait
        briefly for a slot the last ``done`` is freeing). ``done(outputs, None)`` (or
        ``done(None, error)``) is called exactly once, from any thread, when the outputs are
        ready; it must not raise."""
        ...

    def drain(self) -> None:
        """Return once every submitted call has finished and its ``done`` has returned."""
        ...

    def close(self) -> None:
        """Drain, then release threads and queues; the runner takes no more calls."""
        ...


@dataclass(frozen=True)
class MemoryUsage:
    """Peak memory of a candidate, in MiB.

    ``peak_rss_mb``: the process's resident-set high-water mark over the watched span;
    ``baseline_rss_mb``: its resident set when the watch started (before the build, when the
    caller started it there); the candidate's own share is :attr:`rss_delta_mb`.
    ``peak_device_mb``: torch's peak CUDA allocation over the span above the allocation at its
    start (None without CUDA in use). ``method`` says how the peak was read.
    """

    peak_rss_mb: float
    baseline_rss_mb: float
    peak_device_mb: float | None = None
    method: str = ""

    def __post_init__(self) -> None:
        _finite("peak_rss_mb", self.peak_rss_mb)
        _finite("baseline_rss_mb", self.baseline_rss_mb)
        if self.peak_device_mb is not None:
            _finite("peak_device_mb", self.peak_device_mb)

    @property
    def rss_delta_mb(self) -> float:
        """What the span added to the resident set at its peak (never negative)."""
        return max(self.peak_rss_mb - self.baseline_rss_mb, 0.0)


@dataclass(frozen=True)
class ThroughputStats:
    """What one load point measured (closed loop, after warm-up).

    Latencies are per request, in seconds, and count the wait for the batch to fill: requests
    arrive evenly at the measured throughput, so the ``i``-th of a batch of ``b`` waits
    ``(b - 1 - i) / throughput`` before its call starts. ``call_p50_s`` is one call's median,
    from submission to outputs. ``tail_s`` is the ``percentile``-th per-request latency.
    ``max_in_flight``: the most calls seen submitted and not finished at once.
    ``cores_used``: this process's CPU seconds over the window's seconds;
    ``cores_available``: the CPUs it may run on; ``load``: measure's LOAD_KEYS.
    """

    point: LoadPoint
    requests: int
    calls: int
    duration_s: float
    throughput: float  # requests per second over the measured window
    mean_s: float
    p50_s: float
    p90_s: float
    p99_s: float
    percentile: float
    tail_s: float
    call_p50_s: float
    max_in_flight: int
    overlap: Overlap
    memory: MemoryUsage
    cores_used: float = 0.0
    cores_available: int = 0
    load: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        _whole("requests", self.requests)
        _whole("calls", self.calls)
        _whole("max_in_flight", self.max_in_flight)
        for name in ("mean_s", "p50_s", "p90_s", "p99_s", "tail_s", "call_p50_s", "cores_used"):
            _finite(name, getattr(self, name))
        _finite("duration_s", self.duration_s)
        _finite("throughput", self.throughput)
        if self.duration_s <= 0 or self.throughput <= 0:
            raise ValueError("a throughput measurement needs a positive window and rate")
        if not 0 < self.percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile!r}")

    @property
    def noisy(self) -> bool:
        """True when other processes used more than :data:`NOISY_OTHERS_SHARE` of the machine
        during the window (or, where that is unknown, the load average exceeded the CPUs)."""
        load = dict(self.load)
        if "others_cpu_share" in load:
            return load["others_cpu_share"] > NOISY_OTHERS_SHARE
        busiest = max(load.get("loadavg_before", 0.0), load.get("loadavg_after", 0.0))
        return self.cores_available > 0 and busiest > self.cores_available
