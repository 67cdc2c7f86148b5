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
from speedster_dist.search._prior import SearchHistory, expected_gain
from speedster_dist.serving import Objective

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
    # What earlier searches measured: orders the arms and warm-starts the search.
    history: SearchHistory | None = None
    # What "best" means: a throughput or cost objective adds the load points and the knobs
    # that serve requests in flight (``Knob.serving``, ``BackendInfo.throughput_knobs``).
    objective: Objective = field(default_factory=Objective)


def allowed_precisions(
    metric_drop_ths: float | None, metric: str = "numeric_precision"
) -> frozenset[Precision]:
    """Precisions Speedster's threshold rules allow (fp32 always)."""
    ths = metric_drop_ths or 0.0
    allowed = {Precision.FP32}
    if ths > HALF_PRECISION_MIN_THS:
        allowed |= {Precision.TF32, Precision.FP16, Precision.BF16}
    if ths > INT8_MIN_THS_BY_METRIC.get(metric, INT8_MIN_THS):
        allowed |= {Precision.INT8, Precision.INT4}  # int4: generation's weight-only
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


def _arm_knobs(info: BackendInfo, cap: Capability, settings: SpaceSettings) -> tuple[Knob, ...]:
    """The knobs of one arm. Serving under load, a knob that declares ``serving`` choices
    is tuned over them (whether or not knobs are tuned), and the backend's throughput knobs
    join, tuned over all their choices; the latency objective never sees either."""
    if not settings.objective.serves_load:
        return _relevant_knobs(info.knobs, cap, settings.tune_knobs, settings.held_in)
    plain = [k for k in info.knobs if not k.serving]
    serving = [replace(k, choices=k.serving) for k in info.knobs if k.serving]
    return (
        *_relevant_knobs(plain, cap, settings.tune_knobs, settings.held_in),
        *_relevant_knobs(serving, cap, True),
        *_relevant_knobs(info.throughput_knobs, cap, True),
    )


def _serving_names(info: BackendInfo, cap: Capability, settings: SpaceSettings) -> frozenset[str]:
    """The arm's knobs that only serve load (threads, streams, a throughput hint: declared
    ``serving`` choices or ``throughput_knobs``); none for the latency objective."""
    if not settings.objective.serves_load:
        return frozenset()
    serving = [k for k in info.knobs if k.serving] + list(info.throughput_knobs)
    return frozenset(k.name for k in serving if k.applies_to(cap))


@dataclass(frozen=True)
class Arm:
    """One (backend, precision, technique) for a hardware type and the knobs that apply to it.

    ``knobs`` hold the choices the search may take (only the default, ``choices[0]``, when
    knobs are not tuned); ``loads`` the (batch size, concurrency) points it is served at
    (empty for the latency objective): the arm's configs are their full product.
    ``serving_knobs``: the names of its knobs that only serve load (see
    :meth:`SearchSpace.outputs_key`).
    """

    backend: str
    precision: Precision
    technique: str
    knobs: tuple[Knob, ...] = ()
    loads: tuple[tuple[int, int], ...] = ()
    serving_knobs: frozenset[str] = frozenset()

    @property
    def key(self) -> str:
        return f"{self.backend}/{self.precision.value}/{self.technique}"

    @property
    def size(self) -> int:
        return math.prod(len(k.choices) for k in self.knobs) * max(len(self.loads), 1)

    @property
    def default_load(self) -> tuple[int, int] | None:
        """The load point of the arm's default config: the largest batch with the most calls
        in flight (the likeliest to serve the most, so the first pruning bar is high)."""
        return self.loads[-1] if self.loads else None

    def default(self, hardware_key: str) -> Candidate:
        knobs = {k.name: k.choices[0] for k in self.knobs}
        return Candidate.make(
            self.backend, self.precision, hardware_key, self.technique, knobs, self.default_load
        )

    def candidates(self, hardware_key: str) -> list[Candidate]:
        """Every config of the arm, the default first."""
        names = [k.name for k in self.knobs]
        loads: list[tuple[int, int] | None] = list(self.loads) or [None]
        found = [
            Candidate.make(
                self.backend,
                self.precision,
                hardware_key,
                self.technique,
                dict(zip(names, combo, strict=True)),
                load,
            )
            for combo in itertools.product(*(k.choices for k in self.knobs))
            for load in loads
        ]
        default = self.default(hardware_key)
        return [default, *(c for c in found if c != default)]


def _ordered(
    found: list[Candidate], baseline_backend: str, gains: Mapping[str, float]
) -> list[Candidate]:
    """The baseline (the baseline backend's first fp32 config) first, then the best expected
    gain first (``gains`` by arm key, see :func:`derive_space`), fp32 first among equals."""
    baseline = [c for c in found if c.backend == baseline_backend and c.precision is Precision.FP32]
    rest = [c for c in found if c not in baseline[:1]]
    # Stable: ties keep the catalog order.
    rest.sort(key=lambda c: (-gains.get(_arm_key(c), 1.0), c.precision is not Precision.FP32))
    return baseline[:1] + rest


def _arm_key(candidate: Candidate) -> str:
    return f"{candidate.backend}/{candidate.precision.value}/{candidate.technique}"


def _load(candidate: Candidate) -> tuple[int, int] | None:
    return (candidate.batch_size, candidate.concurrency) if candidate.batch_size else None


@dataclass(frozen=True)
class SearchSpace:
    """The conditional space of one hardware type: arms, then knobs that depend on the arm.

    Iterating yields every config (what an exhaustive search measures): the baseline, the
    ``warm_start`` configs (earlier winners on this hardware type), each arm's default in the
    arms' order (best expected gain first), then the other knob configs.
    """

    hardware_key: str
    arms: tuple[Arm, ...]
    baseline_backend: str = "torch"
    warm_start: tuple[Candidate, ...] = ()
    # Expected gain of each arm (arm key, speedup): orders the trials, never the arms
    # themselves (the study's categorical choices stay in catalog order).
    gains: tuple[tuple[str, float], ...] = ()
    # The accepted metric drop (the user's threshold): how far a rejected candidate is off.
    metric_drop_ths: float | None = None
    # What "best" means, and the constraints (searchers rank and prune by it).
    objective: Objective = field(default_factory=Objective)

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

    def outputs_key(self, candidate: Candidate) -> tuple[Any, ...]:
        """What decides ``candidate``'s outputs, hence its metric drop: its arm and its knobs,
        less those that only serve load (its arm's ``serving_knobs``) and its load point.
        Configs with the same key are judged alike: one rejected for its drop, the others
        would be (the search does not build them). Under the latency objective every config
        has a key of its own."""
        key = _arm_key(candidate)
        arm = self.arm(key)
        if arm is None or not arm.loads:  # the latency objective: the config itself
            return (key, candidate.knobs, _load(candidate))
        serving = arm.serving_knobs
        return (key, tuple((name, value) for name, value in candidate.knobs if name not in serving))

    def contains(self, candidate: Candidate) -> bool:
        """Whether ``candidate`` is one of the space's configs (its arm, knobs and choices)."""
        arm = self.arm(_arm_key(candidate))
        values = candidate.knob_dict
        return (
            arm is not None
            and candidate.hardware_key == self.hardware_key
            and set(values) == {k.name for k in arm.knobs}
            and all(values[k.name] in k.choices for k in arm.knobs)
            and _load(candidate) in (arm.loads or (None,))
        )

    def candidates(self) -> list[Candidate]:
        defaults = self.defaults()
        others = [c for arm in self.arms for c in arm.candidates(self.hardware_key)[1:]]
        others = _ordered(others, "", dict(self.gains))
        return list(dict.fromkeys([*defaults[:1], *self.warm_start, *defaults[1:], *others]))

    def defaults(self) -> list[Candidate]:
        """Each arm with its default knobs, in the order an exhaustive search tries them."""
        found = [arm.default(self.hardware_key) for arm in self.arms]
        return _ordered(found, self.baseline_backend, dict(self.gains))


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
    each with the knobs it declares for that device and precision (in catalog order), the
    expected gain of each (:func:`~speedster_dist.search._prior.expected_gain`: trials go best
    first) and the history's earlier winners on this hardware type as its warm start."""
    allowed = allowed_precisions(settings.metric_drop_ths, settings.metric)
    loads = settings.objective.loads
    found = [
        Arm(
            info.name,
            cap.precision,
            cap.technique,
            _arm_knobs(info, cap, settings),
            loads,
            _serving_names(info, cap, settings),
        )
        for info in catalog
        if info.unavailable is None and not info.ignored_by(settings.ignored_backends)
        for cap in info.capabilities
        if _arm_allowed(cap, hardware, settings, allowed)
    ]

    gains = tuple(
        (a.key, expected_gain(a.backend, a.precision, a.technique, hardware, settings.history))
        for a in found
    )
    space = SearchSpace(
        hardware.key,
        tuple(found),
        settings.baseline_backend,
        gains=gains,
        metric_drop_ths=settings.metric_drop_ths,
        objective=settings.objective,
    )
    warm = _warm_start(space, settings.history)
    return replace(space, warm_start=warm) if warm else space


def _warm_start(space: SearchSpace, history: SearchHistory | None) -> tuple[Candidate, ...]:
    """The history's winners on this hardware type, as configs of ``space``: the same config
    when the space has it, else its arm's default (knobs not tuned); the baseline never."""
    found = []
    for winner in (history.winners if history else {}).get(space.hardware_key, ()):
        try:
            precision = Precision(str(winner.get("precision")))
        except ValueError:
            continue
        key = f"{winner.get('backend')}/{precision.value}/{winner.get('technique', '')}"
        arm = space.arm(key)
        if arm is None:
            continue  # not in this space: unavailable here, or a precision not allowed
        knobs = winner.get("knobs") or {}
        wanted = Candidate.make(
            arm.backend, precision, space.hardware_key, arm.technique, knobs, arm.default_load
        )
        configs = arm.candidates(space.hardware_key)
        found.append(wanted if wanted in configs else configs[0])
    return tuple(c for c in dict.fromkeys(found) if c != space.baseline)


def derive_candidates(
    catalog: Iterable[BackendInfo], hardware: HardwareType, settings: SpaceSettings
) -> list[Candidate]:
    """Candidates for ``hardware``: the baseline first, then fp32, then reduced precisions."""
    return derive_space(catalog, hardware, settings).candidates()
