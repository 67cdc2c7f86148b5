"""The search space, derived from what backends declare about themselves.

Nothing here lists backends or precisions by hand: the runtime hands over a catalog of
each backend's declared capabilities and knobs (plus whether it is available on the node),
and the rules below turn it into candidates for one hardware type. This module never
imports torch or any backend library.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from speedster_dist.records import Candidate, HardwareType, Precision

__all__ = [
    "BackendInfo",
    "CapabilityInfo",
    "KnobInfo",
    "SpaceSettings",
    "allowed_precisions",
    "derive_candidates",
]

# Speedster's rules for trying reduced precision: half precision only when some metric drop
# is accepted at all, int8 only above 0.02.
HALF_PRECISION_MIN_THS = 0.0
INT8_MIN_THS = 0.02


@dataclass(frozen=True)
class CapabilityInfo:
    device: str
    precision: Precision
    technique: str
    requires_any: frozenset[str]
    sources: frozenset[str]


@dataclass(frozen=True)
class KnobInfo:
    name: str
    choices: tuple[Any, ...]
    devices: frozenset[str]
    precisions: frozenset[Precision] = frozenset(Precision)


@dataclass(frozen=True)
class BackendInfo:
    """What the search needs to know of one backend on one hardware type."""

    name: str
    capabilities: tuple[CapabilityInfo, ...]
    knobs: tuple[KnobInfo, ...] = ()
    unavailable: str | None = None  # why it cannot run on that hardware, None when it can


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


def allowed_precisions(metric_drop_ths: float | None) -> frozenset[Precision]:
    """Precisions Speedster's threshold rules allow (fp32 always)."""
    ths = metric_drop_ths or 0.0
    allowed = {Precision.FP32}
    if ths > HALF_PRECISION_MIN_THS:
        allowed |= {Precision.FP16, Precision.BF16}
    if ths > INT8_MIN_THS:
        allowed.add(Precision.INT8)
    return frozenset(allowed)


def _compressor_ignored(cap: CapabilityInfo, ignored: frozenset[str]) -> bool:
    names = {cap.precision.value, f"{cap.precision.value}_{cap.technique}" if cap.technique else ""}
    if cap.technique:
        names.add(f"{cap.technique}_quantization")
    if cap.precision in (Precision.FP16, Precision.BF16):
        names.add("half_precision")
    return bool(names & ignored)


def _knob_grid(knobs: Sequence[KnobInfo], cap: CapabilityInfo, tune: bool) -> list[dict[str, Any]]:
    relevant = [k for k in knobs if cap.device in k.devices and cap.precision in k.precisions]
    if not tune:
        return [{k.name: k.choices[0] for k in relevant}]
    names = [k.name for k in relevant]
    return [
        dict(zip(names, combo, strict=True))
        for combo in itertools.product(*(k.choices for k in relevant))
    ]


def derive_candidates(
    catalog: Iterable[BackendInfo], hardware: HardwareType, settings: SpaceSettings
) -> list[Candidate]:
    """Candidates for ``hardware``: the baseline first, then fp32, then reduced precisions."""
    allowed = allowed_precisions(settings.metric_drop_ths)
    found: list[Candidate] = []
    for info in catalog:
        if info.unavailable is not None or info.name in settings.ignored_backends:
            continue
        for cap in info.capabilities:
            if (
                cap.device != hardware.device.value
                or cap.precision not in allowed
                or settings.source_format not in cap.sources
                or not hardware.has_any(cap.requires_any)
                or _compressor_ignored(cap, settings.ignored_compressors)
            ):
                continue
            for knobs in _knob_grid(info.knobs, cap, settings.tune_knobs):
                found.append(
                    Candidate.make(info.name, cap.precision, hardware.key, cap.technique, knobs)
                )
    baseline = [
        c for c in found if c.backend == settings.baseline_backend and c.precision is Precision.FP32
    ]
    rest = [c for c in found if c not in baseline[:1]]
    rest.sort(key=lambda c: c.precision is not Precision.FP32)  # stable: fp32 first
    return baseline[:1] + rest
