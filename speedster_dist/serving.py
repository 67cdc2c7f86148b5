"""Serving many requests: what a load point is, what its measurement found, and how a
backend keeps several requests in flight.

A leaf like :mod:`speedster_dist.records` (standard library only), so that ``backends``
(which run requests), ``measure`` (which times them) and ``search`` (which picks points) share
one definition. Every record here is frozen, picklable and validated in ``__post_init__``
without side effects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_CONCURRENCY",
    "LOAD_OBJECTIVES",
    "NOISY_OTHERS_SHARE",
    "OBJECTIVES",
    "Done",
    "FrontierPoint",
    "GenerationStats",
    "LoadPoint",
    "MemoryUsage",
    "Objective",
    "Overlap",
    "Runner",
    "ThroughputStats",
    "pareto_front",
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

    @property
    def candidate_mb(self) -> float:
        """The candidate's footprint, what ``max_memory_mb`` caps: its peak device memory
        when it ran on a GPU through torch, else what it added to the resident set."""
        return self.peak_device_mb if self.peak_device_mb is not None else self.rss_delta_mb


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
    std_s: float = 0.0  # per-request latencies' standard deviation and least value
    min_s: float = 0.0

    def __post_init__(self) -> None:
        _whole("requests", self.requests)
        _whole("calls", self.calls)
        _whole("max_in_flight", self.max_in_flight)
        names = ("mean_s", "p50_s", "p90_s", "p99_s", "tail_s", "call_p50_s", "std_s", "min_s")
        for name in (*names, "cores_used"):
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


# -- objectives: what "best" means, and the constraints a point must meet --------------------

OBJECTIVES = ("latency", "throughput", "cost")
# Objectives measured at load points (batches of requests, several in flight).
LOAD_OBJECTIVES = frozenset({"throughput", "cost"})
# The load points a throughput or cost search explores when not told: MLPerf's offline
# scenario batches; two calls in flight keep a small machine's cores busy between calls.
DEFAULT_BATCH_SIZES = (1, 8, 32)
DEFAULT_CONCURRENCY = (1, 2)
# What one stream of calls measures (``records.LatencyStats``): the latency objective's tail.
_LATENCY_PERCENTILES = (50.0, 90.0, 99.0)


def _sizes(name: str, values: Any, default: tuple[int, ...]) -> tuple[int, ...]:
    """Whole numbers >= 1, unique and ascending (``default`` when none are given)."""
    if values is None or values == ():
        return default
    return tuple(sorted({_whole(f"each of {name}", v) for v in values}))


def _optional_limit(name: str, value: Any) -> None:
    if value is None:
        return
    _finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be a number > 0 (or None: no limit), got {value!r}")


@dataclass(frozen=True)
class Objective:
    """What a search optimizes, and the constraints a point must meet to count.

    Built from ``optimize_model``'s keywords by ``options``; read by the search (the value a
    study minimizes) and the trial runner (what it measures and whether it is feasible).

    ``kind``: ``"latency"`` (the default, Speedster's: the lowest p50 of one call at the
    samples' batch), ``"throughput"`` (the most requests served a second at a load point) or
    ``"cost"`` (the least cost per 1M requests: within one hardware type it ranks points as
    throughput does, one node's price being the same whatever the point; it needs prices).
    ``batch_sizes`` and ``concurrency``: the load points a throughput or cost search
    explores (requests per call, calls in flight; defaults :data:`DEFAULT_BATCH_SIZES`,
    :data:`DEFAULT_CONCURRENCY`); the latency objective has none.
    ``latency_budget_ms``: the most the ``percentile``-th per-request latency may be;
    ``max_memory_mb``: the most :attr:`MemoryUsage.candidate_mb` may be. A point over
    either is infeasible: measured and recorded, never chosen.
    """

    kind: str = "latency"
    batch_sizes: tuple[int, ...] = ()
    concurrency: tuple[int, ...] = ()
    latency_budget_ms: float | None = None
    percentile: float = 99.0
    max_memory_mb: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVES:
            raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {self.kind!r}")
        if self.serves_load:
            batches = _sizes("batch_sizes", self.batch_sizes, DEFAULT_BATCH_SIZES)
            flight = _sizes("concurrency", self.concurrency, DEFAULT_CONCURRENCY)
            object.__setattr__(self, "batch_sizes", batches)
            object.__setattr__(self, "concurrency", flight)
        elif self.batch_sizes or self.concurrency:
            raise ValueError(
                "batch_sizes and concurrency are load points: they apply to "
                "objective='throughput' or 'cost', not to 'latency' (one call at a time at "
                "the samples' batch)"
            )
        _optional_limit("latency_budget_ms", self.latency_budget_ms)
        _optional_limit("max_memory_mb", self.max_memory_mb)
        _finite("latency_percentile", self.percentile)
        if not 0 < self.percentile <= 100:
            raise ValueError(f"latency_percentile must be in (0, 100], got {self.percentile!r}")
        if not self.serves_load and float(self.percentile) not in _LATENCY_PERCENTILES:
            raise ValueError(
                "with objective='latency' the budget applies to one call's p50, p90 or p99: "
                f"latency_percentile must be 50, 90 or 99, got {self.percentile!r}"
            )

    @property
    def serves_load(self) -> bool:
        """True when points are measured under load (throughput and cost)."""
        return self.kind in LOAD_OBJECTIVES

    @property
    def constrained(self) -> bool:
        return self.latency_budget_ms is not None or self.max_memory_mb is not None

    @property
    def loads(self) -> tuple[tuple[int, int], ...]:
        """Every (batch size, concurrency) explored, ascending; () for latency."""
        return tuple((b, c) for b in self.batch_sizes for c in self.concurrency)

    def violations(self, tail_s: float, memory: MemoryUsage | None) -> tuple[str, ...]:
        """Why a point whose tail latency is ``tail_s`` and memory ``memory`` is infeasible
        (empty: it is feasible). Unknown memory does not violate the cap."""
        found = []
        over_ms, over_mb = self.constraint_values(tail_s, memory)
        if over_ms > 0:
            found.append(
                f"p{self.percentile:g} {tail_s * 1e3:.4g} ms is over the latency budget of "
                f"{self.latency_budget_ms:g} ms"
            )
        if over_mb > 0 and memory is not None:
            found.append(
                f"memory {memory.candidate_mb:.4g} MB is over the cap of {self.max_memory_mb:g} MB"
            )
        return tuple(found)

    def constraint_values(self, tail_s: float, memory: MemoryUsage | None) -> tuple[float, float]:
        """(milliseconds over the budget, MB over the cap): <= 0 where met (Optuna's
        convention for constraints); 0 for a constraint not set."""
        over_ms = 0.0 if self.latency_budget_ms is None else tail_s * 1e3 - self.latency_budget_ms
        over_mb = 0.0
        if self.max_memory_mb is not None and memory is not None:
            over_mb = memory.candidate_mb - self.max_memory_mb
        return over_ms, over_mb

    def identity(self) -> dict[str, Any]:
        """The settings that change what "best" means ({} for the plain latency objective,
        so that its studies keep their names)."""
        if self == Objective():
            return {}
        return {
            "objective": self.kind,
            "batch_sizes": list(self.batch_sizes),
            "concurrency": list(self.concurrency),
            "latency_budget_ms": self.latency_budget_ms,
            "latency_percentile": self.percentile,
            "max_memory_mb": self.max_memory_mb,
        }


@dataclass(frozen=True)
class GenerationStats:
    """What a generation trial measured at batch 1 on a held-out prompt (seconds, MB):
    time to first token (the prefill), time per output token after it, tokens a second over
    whole ``generate()`` calls; the greedy ``agreement`` with the original's tokens and the
    prefill logits' ``cosine`` (held-out samples); weight and KV-cache memory."""

    new_tokens: int
    ttft_p50_s: float
    tpot_p50_s: float
    tpot_p99_s: float
    tokens_per_s: float
    agreement: float
    cosine: float
    weight_mb: float = 0.0
    kv_cache_mb: float = 0.0

    def __post_init__(self) -> None:
        _whole("new_tokens", self.new_tokens)
        for name in ("ttft_p50_s", "tpot_p50_s", "tpot_p99_s", "tokens_per_s"):
            _finite(name, getattr(self, name))
        for name in ("weight_mb", "kv_cache_mb"):
            _finite(name, getattr(self, name))


@dataclass(frozen=True)
class FrontierPoint:
    """One measured point of a hardware type's frontier (throughput against tail latency).

    ``label``: the candidate's (backend, precision, technique, knobs); ``throughput``:
    requests a second; ``tail_s``: the ``percentile``-th per-request latency (the one the
    budget applies to), ``p99_s`` the 99th; ``memory_mb``: :attr:`MemoryUsage.candidate_mb`
    (None when unknown); ``feasible`` False: over a constraint, ``reason`` says which.
    """

    label: str
    point: LoadPoint
    throughput: float
    tail_s: float
    p99_s: float
    percentile: float = 99.0
    memory_mb: float | None = None
    feasible: bool = True
    reason: str = ""

    def __post_init__(self) -> None:
        _finite("throughput", self.throughput)
        _finite("tail_s", self.tail_s)
        _finite("p99_s", self.p99_s)
        if self.memory_mb is not None:
            _finite("memory_mb", self.memory_mb)


def pareto_front(points: Iterable[FrontierPoint]) -> tuple[FrontierPoint, ...]:
    """The points no other point beats on both tail latency (lower) and throughput (higher),
    lowest tail latency first; of equal points the first given is kept."""
    ordered = sorted(points, key=lambda p: (p.tail_s, -p.throughput))
    kept: list[FrontierPoint] = []
    for point in ordered:
        if not kept or point.throughput > kept[-1].throughput:
            kept.append(point)
    return tuple(kept)
