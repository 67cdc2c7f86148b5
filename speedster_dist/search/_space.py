"""The search space, derived from what backends declare about themselves.

Nothing here lists backends or precisions by hand: the runtime hands over a catalog of
each backend's declared capabilities and knobs (plus whether it is available on the node),
and the rules below turn it into candidates for one hardware type. This module never
imports torch or any backend library.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from speedster_dist.records import BackendInfo, Candidate, Capability, HardwareType, Knob, Precision

__all__ = [
    "Arm",
    "SearchSpace",
    "SpaceSettings",
    "allowed_precisions",
    "capped_choices",
    "derive_candidates",
    "derive_space",
]

# Speedster's rules for trying reduced precision: half precision only when some metric drop
# is accepted at all, int8 only above 0.02. The 0.02 bar belongs to Speedster's elementwise
# metric, which int8 noise on near-zero values always exceeds; the metrics that measure what
# users mean (cosine, agreement) judge int8 like any precision: tried once a drop is accepted.
HALF_PRECISION_MIN_THS = 0.0
INT8_MIN_THS = 0.02
INT8_MIN_THS_BY_METRIC = {"cosine": 0.0, "agreement": 0.0}


@dataclass(frozen=True)
class SpaceSettings:
    """User settings that shape the space."""

    metric_drop_ths: float | None = None
    source_format: str = "torch"
    ignored_backends: frozenset[str] = frozenset()
    ignored_compressors: frozenset[str] = frozenset()
    tune_knobs: bool = False  # False: each backend's default knobs only
    baseline_backend: str = "torch"
    extra: Mapping[str, Any] = field(default_factory=dict)
    held_in: int | None = None  # held-in (calibration) samples; None: unknown, not capped
    metric: str = "numeric_precision"  # the built-in metric's name, or "custom"


def allowed_precisions(
    metric_drop_ths: float | None, metric: str = "numeric_precision"
) -> frozenset[Precision]:
    """Precisions Speedster's threshold rules allow (fp32 always)."""
    ths = metric_drop_ths or 0.0
    allowed = {Precision.FP32}
    if ths > HALF_PRECISION_MIN_THS:
        allowed |= {Precision.TF32, Precision.FP16, Precision.BF16}
    if ths > INT8_MIN_THS_BY_METRIC.get(metric, INT8_MIN_THS):
        allowed.add(Precision.INT8)
    return frozenset(allowed)


def _compressor_ignored(cap: Capability, ignored: frozenset[str]) -> bool:
    names = {cap.precision.value, f"{cap.precision.value}_{cap.technique}" if cap.technique else ""}
    if cap.technique:
        names.add(f"{cap.technique}_quantization")
    if cap.precision in (Precision.FP16, Precision.BF16, Precision.TF32):
        names.add("half_precision")
    return bool(names & ignored)


def capped_choices(knob: Knob, held_in: int | None) -> tuple[Any, ...]:
    """``knob``'s choices, sample counts capped at the ``held_in`` samples there are.

    A count of 0 (all) or above ``held_in`` becomes ``held_in``, and choices that become
    equal collapse into one (the default stays first): with 8 samples, (32, 0) is (8,).
    """
    if not knob.counts_samples or held_in is None or held_in < 1:
        return knob.choices
    capped = (held_in if not c or c > held_in else c for c in knob.choices)
    return tuple(dict.fromkeys(capped))


def _relevant_knobs(
    knobs: Sequence[Knob], cap: Capability, tune: bool, held_in: int | None = None
) -> tuple[Knob, ...]:
    relevant = [replace(k, choices=capped_choices(k, held_in)) for k in knobs if k.applies_to(cap)]
    # Without tuning a knob keeps only its default, so the space is the defaults, exactly.
    return tuple(k if tune else replace(k, choices=k.choices[:1]) for k in relevant)


@dataclass(frozen=True)
class Arm:
    """One (backend, precision, technique) for a hardware type and the knobs that apply to it.

    ``knobs`` hold the choices the search may take (only the default, ``choices[0]``, when
    knobs are not tuned): the arm's configs are their full product.
    """

    backend: str
    precision: Precision
    technique: str
    knobs: tuple[Knob, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.backend}/{self.precision.value}/{self.technique}"

    @property
    def size(self) -> int:
        return math.prod(len(k.choices) for k in self.knobs)

    def default(self, hardware_key: str) -> Candidate:
        knobs = {k.name: k.choices[0] for k in self.knobs}
        return Candidate.make(self.backend, self.precision, hardware_key, self.technique, knobs)

    def candidates(self, hardware_key: str) -> list[Candidate]:
        """Every config of the arm, the default first."""
        names = [k.name for k in self.knobs]
        return [
            Candidate.make(
                self.backend,
                self.precision,
                hardware_key,
                self.technique,
                dict(zip(names, combo, strict=True)),
            )
            for combo in itertools.product(*(k.choices for k in self.knobs))
        ]


def _ordered(found: list[Candidate], baseline_backend: str) -> list[Candidate]:
    """The baseline (the baseline backend's first fp32 config) first, then fp32, then the rest."""
    baseline = [c for c in found if c.backend == baseline_backend and c.precision is Precision.FP32]
    rest = [c for c in found if c not in baseline[:1]]
    rest.sort(key=lambda c: c.precision is not Precision.FP32)  # stable: fp32 first
    return baseline[:1] + rest


@dataclass(frozen=True)
class SearchSpace:
    """The conditional space of one hardware type: arms, then knobs that depend on the arm.

    Iterating yields every config (what an exhaustive search measures), the baseline first.
    """

    hardware_key: str
    arms: tuple[Arm, ...]
    baseline_backend: str = "torch"

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.candidates())

    def __len__(self) -> int:
        return self.size

    @property
    def size(self) -> int:
        return sum(arm.size for arm in self.arms)

    @property
    def baseline(self) -> Candidate | None:
        """The config the driver times as the baseline (never pruned), when there is one."""
        return next((c for c in self.defaults() if c.backend == self.baseline_backend), None)

    def arm(self, key: str) -> Arm | None:
        return next((a for a in self.arms if a.key == key), None)

    def candidates(self) -> list[Candidate]:
        found = [c for arm in self.arms for c in arm.candidates(self.hardware_key)]
        return _ordered(found, self.baseline_backend)

    def defaults(self) -> list[Candidate]:
        """Each arm with its default knobs, in the order an exhaustive search tries them."""
        found = [arm.default(self.hardware_key) for arm in self.arms]
        return _ordered(found, self.baseline_backend)


def _arm_allowed(
    cap: Capability,
    hardware: HardwareType,
    settings: SpaceSettings,
    allowed: frozenset[Precision],
) -> bool:
    return (
        cap.device is hardware.device
        and cap.precision in allowed
        and settings.source_format in cap.sources
        and hardware.has_any(cap.requires_any)
        and not _compressor_ignored(cap, settings.ignored_compressors)
    )


def derive_space(
    catalog: Iterable[BackendInfo], hardware: HardwareType, settings: SpaceSettings
) -> SearchSpace:
    """The space for ``hardware``: every available backend x allowed precision x technique,
    each with the knobs it declares for that device and precision (in catalog order)."""
    allowed = allowed_precisions(settings.metric_drop_ths, settings.metric)
    arms = tuple(
        Arm(
            info.name,
            cap.precision,
            cap.technique,
            _relevant_knobs(info.knobs, cap, settings.tune_knobs, settings.held_in),
        )
        for info in catalog
        if info.unavailable is None and info.name not in settings.ignored_backends
        for cap in info.capabilities
        if _arm_allowed(cap, hardware, settings, allowed)
    )
    return SearchSpace(hardware.key, arms, settings.baseline_backend)


def derive_candidates(
    catalog: Iterable[BackendInfo], hardware: HardwareType, settings: SpaceSettings
) -> list[Candidate]:
    """Candidates for ``hardware``: the baseline first, then fp32, then reduced precisions."""
    return derive_space(catalog, hardware, settings).candidates()
