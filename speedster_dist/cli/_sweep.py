"""``speedster-dist sweep SWEEP.yaml``: many models x settings, one history.

The YAML (paths relative to its own folder)::

    out: learners            # each job's learner (and rebench kit) goes to out/<job name>
    history: history         # every trial of every job (--history overrides)
    concurrency: 2           # searches at once (default: the number of Ray nodes)
    defaults:                # any job setting, for every job
      metric_drop_ths: 0.05
    jobs:
      - name: minilm
        model: models/minilm           # a Hugging Face folder, .onnx, TorchScript or .pt2
        inputs: data/texts.jsonl
        settings:                      # optional: one learner per entry, named <job>-<name>
          - {name: exact, metric_drop_ths: 0}
          - {name: fast, optimization_time: 120}

Concurrent jobs are ``optimize_model`` calls in threads of this one Ray driver; each keeps
its own search, and Ray's placement keeps one trial per node across all of them.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from speedster_dist.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    connect_cluster,
    say,
)
from speedster_dist.cli._optimize import JOB_OPTIONS, JobSpec, run_job

__all__ = ["SweepPlan", "add_parser", "load_plan"]

_TOP_KEYS = frozenset({"out", "history", "cluster", "concurrency", "defaults", "jobs"})
_PATHS = frozenset({"model", "inputs", "tokenizer"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SETTABLE = JOB_OPTIONS - {"out", "model", "inputs", "name"}
_CONVERT: dict[str, Any] = {
    "max_length": int,
    "batch_size": int,
    "metric_drop_ths": lambda v: None if v is None else float(v),
    "trial_timeout": float,
    "kit": bool,
    "ignore_compilers": lambda v: tuple(str(x) for x in v),
    "ignore_compressors": lambda v: tuple(str(x) for x in v),
}


@dataclass(frozen=True)
class SweepPlan:
    """A parsed sweep: every job to run, where their learners and trials go."""

    jobs: tuple[JobSpec, ...]
    out: Path
    history: Path | None
    cluster: str | None
    concurrency: int | None


def _settings(raw: dict[str, Any], where: str, base: Path) -> dict[str, Any]:
    unknown = set(raw) - _SETTABLE - {"name"} - (_PATHS if where.startswith("job") else set())
    if unknown:
        raise CliError(
            f"sweep {where}: unknown settings {sorted(unknown)}; allowed: {sorted(_SETTABLE)}"
        )
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "name":
            continue
        try:
            out[key] = (base / str(value)) if key in _PATHS else _CONVERT.get(key, _same)(value)
        except (TypeError, ValueError) as exc:
            raise CliError(f"sweep {where}: {key}={value!r} is invalid: {exc}") from exc
    return out


def _same(value: Any) -> Any:
    return value


def _jobs(raw: dict[str, Any], base: Path, out: Path) -> list[JobSpec]:
    defaults = _settings(dict(raw.get("defaults") or {}), "defaults", base)
    specs = []
    for index, job in enumerate(raw.get("jobs") or []):
        if not isinstance(job, dict) or "model" not in job or "inputs" not in job:
            raise CliError(f"sweep job {index} needs at least 'model' and 'inputs'")
        name = str(job.get("name") or Path(str(job["model"])).stem)
        own = _settings({k: v for k, v in job.items() if k != "settings"}, f"job {name}", base)
        variants = job.get("settings") or [{}]
        for number, variant in enumerate(variants):
            if not isinstance(variant, dict):
                raise CliError(f"sweep job {name}: settings must be a list of mappings")
            suffix = str(variant.get("name", number)) if len(variants) > 1 else ""
            full = f"{name}-{suffix}" if suffix else name
            if not _NAME.match(full):
                raise CliError(f"sweep job name {full!r} must be letters, digits, '_', '.', '-'")
            merged = {**defaults, **own, **_settings(variant, f"settings of {full}", base)}
            specs.append(JobSpec(name=full, out=out / full, **merged))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CliError(f"sweep job names must be unique; repeated: {duplicates}")
    if not specs:
        raise CliError("the sweep has no job")
    return specs


def load_plan(path: Path) -> SweepPlan:
    """Parse and validate ``path`` (YAML is parsed here, and only in the CLI)."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read sweep file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CliError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise CliError(f"{path} must hold a mapping with a 'jobs' list")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise CliError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    base = path.parent
    out = base / str(raw.get("out", "learners"))
    history = base / str(raw["history"]) if raw.get("history") else None
    concurrency = raw.get("concurrency")
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise CliError(f"{path}: concurrency must be a positive integer, got {concurrency!r}")
    return SweepPlan(tuple(_jobs(raw, base, out)), out, history, raw.get("cluster"), concurrency)


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "sweep",
        help="optimize many models x settings, all trials in one history",
        description="Run every job of SWEEP.yaml (see docs/cli.md for the format).",
    )
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--history", type=Path, help="overrides the YAML's history")
    parser.add_argument("--out", type=Path, help="overrides the YAML's out folder")
    parser.add_argument("--concurrency", type=int, help="overrides the YAML's concurrency")
    parser.set_defaults(run=run)


def _node_count() -> int:
    import ray

    return max(1, sum(1 for n in ray.nodes() if n.get("Alive")))


def _one(spec: JobSpec, history: Path, args: argparse.Namespace, concurrent: bool) -> Any:
    started = time.monotonic()
    say(f"{spec.name}: started")
    try:
        learner = _optimize_job(spec, history, args, concurrent)
    except Exception as exc:  # reported now, and again in the summary; the others go on
        say(f"{spec.name}: FAILED after {time.monotonic() - started:.0f} s: {exc}")
        raise
    say(f"{spec.name}: finished in {time.monotonic() - started:.0f} s")
    return learner


def _optimize_job(spec: JobSpec, history: Path, args: argparse.Namespace, concurrent: bool) -> Any:

    def trial(result: Any) -> None:  # with concurrent jobs, say whose trial finished
        detail = f"{result.latency.p50 * 1e3:.3g} ms" if result.latency else result.reason[:60]
        say(
            f"{spec.name}: {result.candidate.hardware_key} {result.candidate.label}: "
            f"{result.status.value} {detail}"
        )

    show = not args.quiet
    return run_job(
        spec,
        history,
        "sweep",
        args.quick_measure,
        progress=show and not concurrent,
        on_trial=trial if show and concurrent else None,
    )


def _report(specs: tuple[JobSpec, ...], futures: dict[str, Future[Any]]) -> int:
    failed = 0
    print("\nSweep results")
    for spec in specs:
        error = futures[spec.name].exception()
        if error is not None:
            failed += 1
            print(f"  {spec.name}: FAILED: {type(error).__name__}: {error}".splitlines()[0])
            continue
        learner = futures[spec.name].result()
        for key, entry in learner.entries.items():
            p50, base = entry.metrics.get("latency_p50_s"), entry.metrics.get("baseline_p50_s")
            speed = f" ({base / p50:.2f}x)" if p50 and base else ""
            print(f"  {spec.name}: {key}: {entry.label} {p50 * 1e3:.3g} ms{speed} -> {spec.out}")
    return EXIT_FAILED if failed else EXIT_OK


def run(args: argparse.Namespace) -> int:
    plan = load_plan(args.sweep)
    history = args.history or plan.history
    if history is None:
        raise CliError("a sweep records every trial: give 'history:' in the YAML or --history")
    out = args.out
    specs = plan.jobs if out is None else tuple(replace(s, out=out / s.name) for s in plan.jobs)
    connect_cluster(args.cluster or plan.cluster or "auto")
    workers = args.concurrency or plan.concurrency or _node_count()
    say(f"sweep: {len(specs)} jobs, {workers} at a time, history {history}")
    futures: dict[str, Future[Any]] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep") as pool:
        for spec in specs:
            futures[spec.name] = pool.submit(_one, spec, history, args, workers > 1)
    sys.stdout.flush()
    return _report(specs, futures)
