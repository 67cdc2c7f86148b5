"""Small frozen records that cross process boundaries (driver <-> Ray trial tasks) and layers
(the search's outcome, read by the summary, the learner builder and the history).

Every record here is picklable, validated in ``__post_init__`` without side effects, and
depends on nothing heavier than the standard library, so any layer may import it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import speedster_dist.serving as _serving
from speedster_dist.serving import FrontierPoint, LoadPoint, MemoryUsage, Objective, ThroughputStats

__all__ = [
    "BackendInfo",
    "Candidate",
    "Capability",
    "Confirmation",
    "ConfirmedLatency",
    "DeviceKind",
    "HardwareType",
    "Knob",
    "LatencyStats",
    "Precision",
    "SavedCandidate",
    "SearchOutcome",
    "TrialResult",
    "TrialStatus",
]


class DeviceKind(str, Enum):
    """Where a compiled model runs."""

    CPU = "cpu"
    GPU = "gpu"


class Precision(str, Enum):
    """Numeric precision of a candidate's weights and arithmetic."""

    FP32 = "fp32"  # IEEE fp32 arithmetic: TF32 tensor-core matmuls are off everywhere
    TF32 = "tf32"  # fp32 storage, TF32 (10-bit mantissa) matmuls on NVIDIA tensor cores
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"
    INT4 = "int4"  # weight-only (generation backends: MatMulNBits, NNCF), activations in float

    @property
    def is_reduced(self) -> bool:
        return self is not Precision.FP32


class TrialStatus(str, Enum):
    """Outcome of one trial, as told to the searcher and written to the history."""

    COMPLETE = "complete"
    REJECTED = "rejected"  # built and ran, but its metric drop is over the threshold
    PRUNED = "pruned"  # stopped early because it could not beat the best so far
    FAILED = "failed"  # raised, crashed its worker, or ran out of time
    # Measured in full, but over a constraint (latency budget, memory cap): never chosen.
    INFEASIBLE = "infeasible"


def _frozen_knobs(knobs: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(knobs.items()))


def _coerce(record: Any, name: str, kind: type[Enum]) -> None:
    """Accept an enum's value (``"cpu"``) where the enum member is meant (frozen records)."""
    value = getattr(record, name)
    if not isinstance(value, kind):
        object.__setattr__(record, name, kind(value))


@dataclass(frozen=True)
class Capability:
    """One (device, precision, technique) a backend can build: data the search space is
    derived from.

    ``requires_any``: CPU/GPU features of which at least one must be present on the
    hardware type (e.g. ``{"avx512_bf16", "amx_bf16"}`` for native bf16); empty = none.
    ``sources``: model formats this capability accepts (``"torch"``, ``"onnx"``).
    """

    device: DeviceKind
    precision: Precision
    technique: str = ""
    requires_any: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset({"torch"})

    def __post_init__(self) -> None:
        _coerce(self, "device", DeviceKind)
        _coerce(self, "precision", Precision)


@dataclass(frozen=True)
class Knob:
    """A tunable backend option: ``choices[0]`` is the default used by constrained searches.

    It applies to the capabilities of its ``devices`` and ``precisions`` and, when
    ``techniques`` is not empty, only to those techniques. A ``counts_samples`` knob's
    choices are numbers of held-in samples (0: all of them): the search caps them at the
    number there are, so a candidate shows and records the count it really uses.
    ``backoff`` lists the knob's values from the least to the most accurate (e.g. how many
    layers stay in float): when a candidate is rejected for its metric drop, the search tries
    it again with the next value, while that helps and the budget lasts, whether or not
    knobs are tuned; the values need not be among ``choices``. ``serving``: the choices
    tuned when the objective serves load (throughput, cost), the first its default there,
    whether or not knobs are tuned (threads, streams, a throughput hint); empty: the knob
    is tuned with the others.
    """

    name: str
    choices: tuple[Any, ...]
    devices: frozenset[DeviceKind] = frozenset({DeviceKind.CPU, DeviceKind.GPU})
    precisions: frozenset[Precision] = frozenset(Precision)
    techniques: frozenset[str] = frozenset()
    counts_samples: bool = False
    backoff: tuple[Any, ...] = ()
    serving: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError(f"knob {self.name!r} needs at least one choice")
        if len(set(self.backoff)) != len(self.backoff):
            raise ValueError(f"knob {self.name!r}: its backoff values repeat")
        object.__setattr__(self, "devices", frozenset(DeviceKind(d) for d in self.devices))
        object.__setattr__(self, "precisions", frozenset(Precision(p) for p in self.precisions))

    @property
    def default(self) -> Any:
        return self.choices[0]

    def applies_to(self, capability: Capability) -> bool:
        return (
            capability.device in self.devices
            and capability.precision in self.precisions
            and (not self.techniques or capability.technique in self.techniques)
        )


@dataclass(frozen=True)
class BackendInfo:
    """What the search needs to know of one backend on one node: its declared capabilities
    and knobs (``throughput_knobs`` apart), and why it cannot run there (None when it can)."""

    name: str
    capabilities: tuple[Capability, ...]
    knobs: tuple[Knob, ...] = ()
    unavailable: str | None = None
    # Knobs that pay off only with requests in flight: searched for throughput and cost only.
    throughput_knobs: tuple[Knob, ...] = ()
    # The backends it is made of (a prefill/decode split): ignoring one of them ignores it.
    parts: tuple[str, ...] = ()

    def ignored_by(self, ignored: frozenset[str]) -> bool:
        """Whether ``ignored`` (backend names a request ignores) names it or one of its parts."""
        return self.name in ignored or any(part in ignored for part in self.parts)


@dataclass(frozen=True)
class SavedCandidate:
    """A kept candidate's model files (name -> bytes) and the JSON-able options that load
    them with its backend's ``load``."""

    backend: str
    device: str
    options: dict[str, Any]
    files: Mapping[str, bytes]  # a saved artifact's files are read when used

    @property
    def size_mb(self) -> float:
        return sum(len(b) for b in self.files.values()) / 2**20


@dataclass(frozen=True)
class HardwareType:
    """A class of interchangeable machines: nodes with the same ``key`` measure alike.

    ``key`` is readable and stable (for example ``cpu-amd-epyc-avx2-fma-2c``);
    ``features`` are the instruction-set extensions that decide which backend and
    precision may win (``avx512_vnni``, ``avx512_bf16``, ``amx_bf16``...).
    """

    key: str
    device: DeviceKind
    description: str = ""
    features: frozenset[str] = frozenset()
    cores: int = 0
    gpu_name: str = ""
    gpu_memory_mb: int = 0
    compute_capability: str = ""
    # Fingerprint details that do not enter the key (or only through the fields above).
    cpu_vendor: str = ""
    cpu_model: str = ""
    arch: str = ""  # instruction-set architecture: x86_64, aarch64...
    gpu_driver: str = ""
    cuda_version: str = ""

    def __post_init__(self) -> None:
        if not self.key or any(ch.isspace() for ch in self.key):
            raise ValueError(f"hardware key must be a non-empty word, got {self.key!r}")

    def has_any(self, required: frozenset[str]) -> bool:
        """True when no feature is required or at least one of ``required`` is present."""
        return not required or bool(required & self.features)


@dataclass(frozen=True)
class Candidate:
    """One point of the search space: how to build a model for one hardware type and, when
    the objective serves load (throughput, cost), how to serve it: ``batch_size`` requests
    per call with ``concurrency`` calls in flight (both 0: one call at a time at the
    samples' batch, the latency objective's way)."""

    backend: str
    precision: Precision
    hardware_key: str
    technique: str = ""  # e.g. "dynamic" / "static" quantization, "" when none applies
    knobs: tuple[tuple[str, Any], ...] = ()
    batch_size: int = 0
    concurrency: int = 0

    def __post_init__(self) -> None:
        if not self.backend:
            raise ValueError("a candidate needs a backend name")
        if not isinstance(self.precision, Precision):
            object.__setattr__(self, "precision", Precision(self.precision))
        if isinstance(self.knobs, Mapping):
            object.__setattr__(self, "knobs", _frozen_knobs(self.knobs))
        if (self.batch_size == 0) != (self.concurrency == 0):
            raise ValueError("a load point needs both a batch size and a concurrency")
        if self.batch_size:  # checked as a load point's
            LoadPoint(self.batch_size, self.concurrency)

    @classmethod
    def make(
        cls,
        backend: str,
        precision: Precision | str,
        hardware_key: str,
        technique: str = "",
        knobs: Mapping[str, Any] | None = None,
        load: tuple[int, int] | None = None,
    ) -> Candidate:
        """``load``: (batch size, concurrency), or None for one call at a time."""
        frozen = _frozen_knobs(knobs or {})
        return cls(
            backend, Precision(precision), hardware_key, technique, frozen, *(load or (0, 0))
        )

    @property
    def knob_dict(self) -> dict[str, Any]:
        return dict(self.knobs)

    @property
    def load_point(self) -> LoadPoint | None:
        """The load point it is served at (with its knobs); None for the latency objective."""
        if not self.batch_size:
            return None
        return LoadPoint(self.batch_size, self.concurrency, self.knobs)

    @property
    def label(self) -> str:
        """Short human label, e.g. ``onnxruntime int8/static`` (``... @ 8x2``: batch 8, two
        calls in flight)."""
        tech = f"/{self.technique}" if self.technique else ""
        knobs = "".join(f" {k}={v}" for k, v in self.knobs)
        load = f" @ {self.batch_size}x{self.concurrency}" if self.batch_size else ""
        return f"{self.backend} {self.precision.value}{tech}{knobs}{load}"


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one call in seconds, over ``count`` timed calls after warm-up."""

    count: int
    mean: float
    std: float
    p50: float
    p90: float
    p99: float
    min: float
    total_s: float

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("latency statistics need at least one timed call")
        for name in ("mean", "std", "p50", "p90", "p99", "min", "total_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"latency {name} must be a finite non-negative number, got {value}"
                )


@dataclass(frozen=True)
class TrialResult:
    """What one trial measured. ``latency`` is set when COMPLETE or INFEASIBLE (and may be
    when PRUNED): one call's figures, or, for a load point, the per-request figures of
    ``throughput`` (the batch-fill wait included). ``memory``: the candidate's peak memory
    from before its build to the end of its measurement."""

    candidate: Candidate
    status: TrialStatus
    reason: str = ""
    latency: LatencyStats | None = None
    metric_drop: float | None = None
    build_s: float = 0.0
    model_size_mb: float = 0.0
    node_id: str = ""
    is_baseline: bool = False
    extra: tuple[tuple[str, Any], ...] = field(default=())
    # Wall-clock (epoch) seconds on the node when the trial body started and ended; 0 unknown.
    started_at: float = 0.0
    finished_at: float = 0.0
    # (input name, shape) of a candidate built for the samples' shapes only although the
    # model's axes are dynamic (a backend faster with fixed shapes); empty: it takes them.
    fixed_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    # What the build found worth telling the user (e.g. int8 calibrated on few distinct
    # samples): the backend's ``Compiled.notes``, printed under its hardware type's summary.
    notes: tuple[str, ...] = ()
    throughput: ThroughputStats | None = None  # a load point's measurement
    memory: MemoryUsage | None = None
    generation: _serving.GenerationStats | None = (
        None  # a generation trial's tokens/s, TTFT, TPOT...
    )

    def __post_init__(self) -> None:
        measured = (TrialStatus.COMPLETE, TrialStatus.INFEASIBLE)
        if self.status in measured and self.latency is None:
            raise ValueError(f"a {self.status.value} trial must carry its latency")
        if self.status is not TrialStatus.COMPLETE and not self.reason:
            raise ValueError(f"a {self.status.value} trial must say why")

    @property
    def ok(self) -> bool:
        return self.status is TrialStatus.COMPLETE


@dataclass(frozen=True)
class ConfirmedLatency:
    """One candidate re-timed after the search: its p50 (seconds) in each round."""

    candidate: Candidate
    is_baseline: bool
    round_p50s: tuple[float, ...]
    pid: int = 0  # the process that built and timed it (a fresh one per contender)

    def __post_init__(self) -> None:
        if not self.round_p50s or not all(math.isfinite(v) and v > 0 for v in self.round_p50s):
            raise ValueError("a confirmed latency needs positive finite round medians")

    @property
    def p50(self) -> float:
        """The median of the round medians."""
        return float(statistics.median(self.round_p50s))

    @property
    def low(self) -> float:
        return min(self.round_p50s)

    @property
    def high(self) -> float:
        return max(self.round_p50s)


@dataclass(frozen=True)
class Confirmation:
    """The baseline and a hardware type's best candidates re-timed side by side on one node,
    in alternating order over several rounds. ``reason`` non-empty: not confirmed, and why."""

    hardware_key: str
    entries: tuple[ConfirmedLatency, ...] = ()
    rounds: int = 0
    node_id: str = ""
    reason: str = ""
    load: tuple[tuple[str, float], ...] = ()  # what the machine load was (measure's keys)
    repeated: int = 0  # rounds timed again because the machine was overloaded in them

    @property
    def ok(self) -> bool:
        return not self.reason and self.baseline is not None and len(self.entries) > 1

    @property
    def baseline(self) -> ConfirmedLatency | None:
        return next((e for e in self.entries if e.is_baseline), None)

    def of(self, candidate: Candidate) -> ConfirmedLatency | None:
        return next((e for e in self.entries if e.candidate == candidate), None)

    def speedup(self, candidate: Candidate) -> tuple[float, float, float] | None:
        """(median ratio, lowest, highest per-round ratio) of the baseline over ``candidate``:
        the rounds pair the two measurements made moments apart."""
        base, mine = self.baseline, self.of(candidate)
        if base is None or mine is None:
            return None
        ratios = [b / c for b, c in zip(base.round_p50s, mine.round_p50s, strict=False)]
        return base.p50 / mine.p50, min(ratios), max(ratios)


@dataclass(frozen=True)
class SearchOutcome:
    """Everything a search measured, and the winner of each hardware type (``run_search``'s
    answer). Keyed by hardware key; the driver builds it once, when the search finishes."""

    hardware: dict[str, HardwareType] = field(default_factory=dict)
    results: list[TrialResult] = field(default_factory=list)
    winners: dict[str, TrialResult] = field(default_factory=dict)
    saved: dict[str, SavedCandidate] = field(default_factory=dict)
    no_winner: dict[str, str] = field(default_factory=dict)  # hardware key -> why
    skipped: dict[str, list[str]] = field(default_factory=dict)  # key -> "backend: why" lines
    wall_s: float = 0.0
    budget_exhausted: bool = False
    # The baseline's files (the original model in a standard format), a CPU one if any ran.
    portable: SavedCandidate | None = None
    lost: dict[str, str] = field(default_factory=dict)  # key -> why its nodes are gone
    joined_late: list[str] = field(default_factory=list)  # keys first seen mid-search
    # The winners re-timed side by side after the search (key -> figures), or why not.
    confirmed: dict[str, Confirmation] = field(default_factory=dict)
    not_confirmed: dict[str, str] = field(default_factory=dict)
    confirm_s: float = 0.0  # seconds the confirmation took (after the search's budget)
    missing_groups: dict[str, str] = field(default_factory=dict)  # node group -> why not up
    node_groups: dict[str, str] = field(default_factory=dict)  # hardware key -> node group
    # Load objectives: per hardware key, the Pareto set of its fully measured load points
    # (throughput against tail latency, infeasible ones marked), lowest latency first.
    frontiers: dict[str, tuple[FrontierPoint, ...]] = field(default_factory=dict)
    objective: Objective = field(default_factory=Objective)  # what the winners were chosen by
    # Types whose winner is saved as a program (loads only with trust_code): their fastest
    # data-only candidate (ONNX, OpenVINO IR...) and its files, loaded by default instead.
    data_only: dict[str, TrialResult] = field(default_factory=dict)
    data_only_saved: dict[str, SavedCandidate] = field(default_factory=dict)

    def baseline(self, hardware_key: str) -> TrialResult | None:
        """The baseline trial of ``hardware_key`` (every speedup is relative to it)."""
        return next(
            (r for r in self.results if r.is_baseline and r.candidate.hardware_key == hardware_key),
            None,
        )
