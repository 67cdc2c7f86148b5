"""Many models x settings, one history: the sweep plan and its run.

The plan comes from a mapping (the CLI parses the YAML; see docs/cli.md for the format)::

    out: learners            # each job's learner (and rebench kit) goes to out/<job name>
    history: history         # every trial of every job
    concurrency: 2           # searches at once (default: the number of Ray nodes)
    defaults: {metric_drop_ths: 0.05}
    jobs:
      - name: minilm
        model: models/minilm           # a Hugging Face folder, .onnx, TorchScript or .pt2
        inputs: data/texts.jsonl
        settings:                      # optional: one learner per entry, named <job>-<name>
          - {name: exact, metric_drop_ths: 0}
          - {name: fast, optimization_time: 120}

Each job is its own driver process (``python -m speedster_dist.fleet._sweep_child``) joined
to this process's Ray cluster: a job that crashes (a segfault, ``os._exit``, an OOM kill)
ends alone and is reported, the others go on. Processes rather than Ray jobs
(``JobSubmissionClient``): that needs the Ray dashboard, which a private embedded Ray does
not run; processes rather than Ray tasks: a search's driver must own its Ray connection
(it submits tasks, waits on them and cancels them). Ray's placement keeps one trial per node
across all of them; time a trial waits for its node does not count against its timeout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speedster_dist.errors import InputError
from speedster_dist.fleet._jobs import JOB_OPTIONS, JobSpec
from speedster_dist.learner import HardwareKeyedLearner
from speedster_dist.naming import model_name
from speedster_dist.search import anchor_storage

__all__ = ["SweepJobResult", "SweepPlan", "node_count", "plan_from_mapping"]

_TOP_KEYS = frozenset({"out", "history", "cluster", "concurrency", "defaults", "jobs"})
_PATHS = frozenset({"model", "inputs", "tokenizer", "prices"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SETTABLE = JOB_OPTIONS - {"out", "model", "inputs", "name"}
_CONVERT: dict[str, Any] = {
    "max_length": int,
    "batch_size": int,
    "metric_drop_ths": lambda v: None if v is None else float(v),
    "trial_timeout": float,
    "kit": bool,
    "resume": bool,
    "group_wait": float,
    "node_groups": lambda v: tuple(str(x) for x in ([v] if isinstance(v, str) else v)),
    "ignore_compilers": lambda v: tuple(str(x) for x in v),
    "ignore_compressors": lambda v: tuple(str(x) for x in v),
}
_ANCHORED = {"study_storage": anchor_storage}  # settings read relative to the YAML's folder


@dataclass(frozen=True)
class SweepPlan:
    """A parsed sweep: every job to run, where their learners and trials go."""

    jobs: tuple[JobSpec, ...]
    out: Path
    history: Path | None
    cluster: str | None
    concurrency: int | None


@dataclass(frozen=True)
class SweepJobResult:
    """How one job of a sweep ended: its winners (hardware key -> label, p50_s,
    baseline_p50_s), or the error that stopped it. ``learner`` is None when the job ran in
    its own process (its learner is in ``spec.out``)."""

    spec: JobSpec
    learner: HardwareKeyedLearner | None = None
    error: BaseException | None = None
    winners: dict[str, dict[str, Any]] = field(default_factory=dict)


def _same(value: Any) -> Any:
    return value


def _settings(raw: Mapping[str, Any], where: str, base: Path) -> dict[str, Any]:
    unknown = set(raw) - _SETTABLE - {"name"} - (_PATHS if where.startswith("job") else set())
    if unknown:
        raise InputError(
            f"sweep {where}: unknown settings {sorted(unknown)}; allowed: {sorted(_SETTABLE)}"
        )
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "name":
            continue
        try:
            if key in _PATHS:
                out[key] = base / str(value)
            elif key in _ANCHORED:
                if not isinstance(value, str):
                    raise TypeError("give it as text: a URL or a path")
                out[key] = _ANCHORED[key](value, base)
            else:
                out[key] = _CONVERT.get(key, _same)(value)
        except (TypeError, ValueError) as exc:
            raise InputError(f"sweep {where}: {key}={value!r} is invalid: {exc}") from exc
    return out


def _variants(job: Mapping[str, Any], name: str) -> list[tuple[str, dict[str, Any]]]:
    variants = job.get("settings") or [{}]
    named = []
    for number, variant in enumerate(variants):
        if not isinstance(variant, dict):
            raise InputError(f"sweep job {name}: settings must be a list of mappings")
        suffix = str(variant.get("name", number)) if len(variants) > 1 else ""
        full = f"{name}-{suffix}" if suffix else name
        if not _NAME.match(full):
            raise InputError(f"sweep job name {full!r} must be letters, digits, '_', '.', '-'")
        named.append((full, variant))
    return named


def _default_name(model: Path) -> str:
    """A job without a name is named after its model (its config's name, never a bare
    ``model`` folder), in the characters a job name may hold."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", model_name(model)).strip("-._")
    return cleaned or "model"


def _jobs(raw: Mapping[str, Any], base: Path, out: Path) -> list[JobSpec]:
    defaults = _settings(dict(raw.get("defaults") or {}), "defaults", base)
    specs = []
    for index, job in enumerate(raw.get("jobs") or []):
        if not isinstance(job, dict) or "model" not in job or "inputs" not in job:
            raise InputError(f"sweep job {index} needs at least 'model' and 'inputs'")
        name = str(job.get("name") or _default_name(base / str(job["model"])))
        own = _settings({k: v for k, v in job.items() if k != "settings"}, f"job {name}", base)
        for full, variant in _variants(job, name):
            merged = {**defaults, **own, **_settings(variant, f"settings of {full}", base)}
            # The history names the model after the job; each setting is a learner of it.
            specs.append(JobSpec(name=full, out=out / full, model_name=name, **merged))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"sweep job names must be unique; repeated: {duplicates}")
    if not specs:
        raise InputError("the sweep has no job")
    for spec in specs:
        try:
            spec.validate()
        except InputError as exc:
            raise InputError(f"sweep job {spec.name}: {exc}") from None
    return specs


def plan_from_mapping(raw: Any, base: Path, where: str = "the sweep") -> SweepPlan:
    """Validate a sweep description (paths relative to ``base``); InputError says what is
    wrong, naming ``where`` it came from."""
    if not isinstance(raw, dict):
        raise InputError(f"{where} must hold a mapping with a 'jobs' list")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise InputError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    out = base / str(raw.get("out", "learners"))
    history = base / str(raw["history"]) if raw.get("history") else None
    concurrency = raw.get("concurrency")
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise InputError(f"{where}: concurrency must be a positive integer, got {concurrency!r}")
    return SweepPlan(tuple(_jobs(raw, base, out)), out, history, raw.get("cluster"), concurrency)


def node_count() -> int:
    """Alive nodes of the connected Ray cluster (the default number of searches at once)."""
    import ray

    return max(1, sum(1 for n in ray.nodes() if n.get("Alive")))
