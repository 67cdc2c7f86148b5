"""A config of the space as an Optuna trial's parameters, and back; what a trial records.

The parameters are ``arm`` (``backend/precision/technique``) and, conditional on it, one
categorical per knob of that arm's backend (``<backend>.<knob>``); a throughput or cost
search adds ``batch_size`` and ``concurrency`` (shared by every arm, so that what the study
learns of a load point carries over from one backend to the next).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from speedster_dist.records import Candidate, TrialResult
from speedster_dist.search._budget import BUDGET_EXHAUSTED
from speedster_dist.search._space import SearchSpace

if TYPE_CHECKING:
    import optuna

__all__ = [
    "ARM",
    "BATCH_SIZE",
    "CONCURRENCY",
    "decode",
    "encode",
    "params",
    "result_attrs",
    "suggest",
]

ARM = "arm"
BATCH_SIZE = "batch_size"
CONCURRENCY = "concurrency"
_PRIMITIVE = (str, int, float, bool, type(None))


def encode(choices: tuple[Any, ...]) -> tuple[Any, ...]:
    """Optuna categoricals hold primitives; anything else is stored as its index."""
    if all(isinstance(c, _PRIMITIVE) for c in choices):
        return choices
    return tuple(range(len(choices)))


def _arm_key(candidate: Candidate) -> str:
    return f"{candidate.backend}/{candidate.precision.value}/{candidate.technique}"


def params(space: SearchSpace, candidate: Candidate) -> dict[str, Any]:
    """The study parameters of ``candidate`` (a config of ``space``)."""
    arm = space.arm(_arm_key(candidate))
    assert arm is not None, candidate
    found: dict[str, Any] = {ARM: arm.key}
    values = candidate.knob_dict
    for knob in arm.knobs:
        encoded = encode(knob.choices)
        found[f"{arm.backend}.{knob.name}"] = encoded[knob.choices.index(values[knob.name])]
    if arm.loads:
        found.update({BATCH_SIZE: candidate.batch_size, CONCURRENCY: candidate.concurrency})
    return found


def suggest(space: SearchSpace, trial: optuna.Trial) -> Candidate:
    """Sample (or read an enqueued trial's fixed) params into a config of ``space``."""
    arm_key = trial.suggest_categorical(ARM, [a.key for a in space.arms])
    arm = space.arm(str(arm_key))
    assert arm is not None
    knobs = {}
    for knob in arm.knobs:
        encoded = encode(knob.choices)
        value = trial.suggest_categorical(f"{arm.backend}.{knob.name}", list(encoded))
        knobs[knob.name] = knob.choices[encoded.index(value)]
    load = None
    if arm.loads:
        objective = space.objective
        batch = trial.suggest_categorical(BATCH_SIZE, list(objective.batch_sizes))
        flight = trial.suggest_categorical(CONCURRENCY, list(objective.concurrency))
        load = (int(batch), int(flight))
    return Candidate.make(
        arm.backend, arm.precision, space.hardware_key, arm.technique, knobs, load
    )


def decode(space: SearchSpace, stored: Mapping[str, Any]) -> Candidate | None:
    """The config of a stored trial's params; None when it is not in ``space``."""
    arm = space.arm(str(stored.get(ARM)))
    if arm is None:
        return None
    knobs = {}
    for knob in arm.knobs:
        encoded = encode(knob.choices)
        value = stored.get(f"{arm.backend}.{knob.name}")
        if value not in encoded:
            return None
        knobs[knob.name] = knob.choices[encoded.index(value)]
    load: tuple[int, int] | None = None
    if arm.loads:
        wanted = (stored.get(BATCH_SIZE), stored.get(CONCURRENCY))
        load = next((point for point in arm.loads if point == wanted), None)
        if load is None:
            return None
    return Candidate.make(
        arm.backend, arm.precision, space.hardware_key, arm.technique, knobs, load
    )


def result_attrs(result: TrialResult) -> dict[str, Any]:
    """The user attributes a told trial carries (what people read in optuna-dashboard)."""
    attrs: dict[str, Any] = {
        "label": result.candidate.label,
        "status": result.status.value,
        "is_baseline": result.is_baseline,
        "build_s": result.build_s,
        "metric_drop": result.metric_drop,
    }
    if result.reason:
        attrs["reason"] = result.reason[-1000:]
    if result.latency is not None:
        attrs.update(p50_s=result.latency.p50, p90_s=result.latency.p90)
        attrs["calls"] = result.latency.count
    stats = result.throughput
    if stats is not None:
        attrs.update(throughput=stats.throughput, p99_s=stats.p99_s, tail_s=stats.tail_s)
    if result.memory is not None:
        attrs["memory_mb"] = result.memory.candidate_mb
    if result.reason == BUDGET_EXHAUSTED:
        attrs["retry"] = True  # not a verdict on the config: a resumed search tries it again
    return attrs
