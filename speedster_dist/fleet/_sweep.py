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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from speedster_dist.errors import InputError
from speedster_dist.fleet._jobs import JobSpec
from speedster_dist.fleet._sweep_schema import JobFile, SweepFile, VariantFile, validate_sweep
from speedster_dist.learner import HardwareKeyedLearner
from speedster_dist.naming import model_name
from speedster_dist.search import anchor_storage

__all__ = ["SweepJobResult", "SweepPlan", "node_count", "plan_from_mapping"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PATHS = frozenset({"model", "inputs", "tokenizer", "prices"})  # relative to the sweep file
_TUPLES = frozenset(
    {"ignore_compilers", "ignore_compressors", "node_groups", "batch_sizes", "concurrency"}
)
_NOT_SETTINGS = {"name", "settings"}


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
    """How one job of a sweep ended: its winners (one per hardware type) and every trial it
    reported, as :func:`~speedster_dist.fleet.winner_json` and ``trial_json`` documents, or
    the error that stopped it. ``learner`` is None when the job ran in its own process (its
    learner is in ``spec.out``)."""

    spec: JobSpec
    learner: HardwareKeyedLearner | None = None
    error: BaseException | None = None
    winners: list[dict[str, Any]] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)


def _settings(given: BaseModel, base: Path) -> dict[str, Any]:
    """The JobSpec fields that ``given`` (validated) sets, paths anchored at ``base``."""
    out: dict[str, Any] = {}
    for key, value in given.model_dump(exclude_unset=True, exclude=_NOT_SETTINGS).items():
        if key in _TUPLES:
            out[key] = tuple(value or ())
        elif value is None:
            out[key] = None
        elif key in _PATHS:
            out[key] = base / value
        elif key == "study_storage":  # a URL kept as written, a path read from the YAML's folder
            out[key] = anchor_storage(value, base)
        else:
            out[key] = value
    return out


def _variants(job: JobFile, name: str) -> list[tuple[str, BaseModel]]:
    variants: list[VariantFile] = job.settings or [VariantFile()]
    named: list[tuple[str, BaseModel]] = []
    for number, variant in enumerate(variants):
        suffix = (variant.name or str(number)) if len(variants) > 1 else ""
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


def _jobs(sweep: SweepFile, base: Path, out: Path) -> list[JobSpec]:
    defaults = _settings(sweep.defaults, base) if sweep.defaults else {}
    specs = []
    for job in sweep.jobs:
        name = job.name or _default_name(base / job.model)
        own = _settings(job, base)  # its model and inputs too
        for full, variant in _variants(job, name):
            merged = {**defaults, **own, **_settings(variant, base)}
            # The history names the model after the job; each setting is a learner of it.
            specs.append(JobSpec(name=full, out=out / full, model_name=name, **merged))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"sweep job names must be unique; repeated: {duplicates}")
    for spec in specs:
        try:
            spec.validate()
        except InputError as exc:
            raise InputError(f"sweep job {spec.name}: {exc}") from None
    return specs


def plan_from_mapping(raw: Any, base: Path, where: str = "the sweep") -> SweepPlan:
    """Validate a sweep description (paths relative to ``base``): its shape by
    :mod:`._sweep_schema`, its values as ``optimize_model`` checks them. InputError says
    what is wrong, naming ``where`` it came from and the field (``jobs[0].kit``)."""
    sweep = validate_sweep(raw, where)
    out = base / sweep.out
    history = base / sweep.history if sweep.history else None
    jobs = tuple(_jobs(sweep, base, out))
    return SweepPlan(jobs, out, history, sweep.cluster, sweep.concurrency)


def node_count() -> int:
    """Alive nodes of the connected Ray cluster (the default number of searches at once)."""
    from speedster_dist.runtime.ray import alive_node_count

    return alive_node_count()
