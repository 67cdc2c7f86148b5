"""``speedster-dist sweep SWEEP.yaml``: many models x settings, one history.

The YAML format is :mod:`speedster_dist.fleet._sweep`'s (paths relative to its own folder);
see docs/cli.md. YAML is parsed here, and only in the CLI.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from speedster_dist.cli._common import EXIT_FAILED, EXIT_OK, CliError, connect_cluster
from speedster_dist.cli._fleet_options import add_fleet_options, fleet_settings
from speedster_dist.errors import InputError
from speedster_dist.fleet import (
    JobSpec,
    SweepJobResult,
    SweepPlan,
    check_sample_count,
    detect_inputs,
    detect_model,
    node_count,
    path_text,
    plan_from_mapping,
    run_sweep,
)
from speedster_dist.present import ms, show, terminal_table

__all__ = ["add_parser", "load_plan"]


def load_plan(path: Path) -> SweepPlan:
    """Parse and validate the sweep file ``path``."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read sweep file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CliError(f"{path} is not valid YAML: {exc}") from exc
    return plan_from_mapping(raw, path.parent, str(path))


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
    add_fleet_options(parser, overrides=True)
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout (docs/cli.md)"
    )
    parser.set_defaults(run=run)


def _print_results(results: list[SweepJobResult]) -> int:
    """One row per job and hardware type (a failed job: one row with its error)."""
    failed, rows = 0, []
    for job in results:
        if job.error is not None:
            failed += 1
            why = f"FAILED: {type(job.error).__name__}: {job.error}".splitlines()[0]
            rows.append([job.spec.name, "-", why, "", "", ""])
            continue
        for winner in job.winners:
            speedup = winner.get("speedup")
            rows.append(
                [
                    job.spec.name,
                    str(winner["hardware_type"]),
                    str(winner.get("label", "")),
                    ms(winner.get("latency_p50_s"), "n/a"),
                    f"{speedup:.2f}x" if speedup else "n/a",
                    str(job.spec.out),
                ]
            )
    headers = ["job", "hardware type", "winner", "latency (p50)", "speed-up", "saved to"]
    show("\nSweep results\n" + terminal_table(headers, rows))
    return EXIT_FAILED if failed else EXIT_OK


def _job_json(job: SweepJobResult) -> dict[str, Any]:
    """A job of the --json document: how it ended, its winners and trials, its files."""
    return {
        "name": job.spec.name,
        "model_name": job.spec.model_name or job.spec.name,
        "status": "failed" if job.error is not None else "done",
        "error": None if job.error is None else f"{type(job.error).__name__}: {job.error}",
        "winners": job.winners,
        "trials": job.trials,
        "paths": {"learner": path_text(job.spec.out), "kit": path_text(job.spec.kit_path)},
    }


def _check_files(specs: tuple[JobSpec, ...]) -> None:
    """Every job's model and inputs, checked before Ray starts (as ``optimize`` does)."""
    for spec in specs:
        try:
            model = detect_model(spec.model, spec.model_class)
            inputs = detect_inputs(
                spec.inputs, model, spec.tokenizer, spec.max_length, spec.batch_size
            )
            check_sample_count(inputs)
        except InputError as exc:
            raise CliError(f"sweep job {spec.name}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    plan = load_plan(args.sweep)
    history = args.history or plan.history
    if history is None:
        raise CliError("a sweep records every trial: give 'history:' in the YAML or --history")
    out = args.out
    specs = plan.jobs if out is None else tuple(replace(s, out=out / s.name) for s in plan.jobs)
    _check_files(specs)
    specs = tuple(replace(s, **fleet_settings(args)) for s in specs)  # --resume etc. override
    cluster = args.cluster or plan.cluster or "auto"
    connect_cluster(cluster)
    workers = args.concurrency or plan.concurrency or node_count()
    results = run_sweep(
        specs,
        history,
        workers,
        args.quick_measure,
        args.quiet,
        cluster=cluster,
        verbosity=args.verbose,
        debug=args.debug,
    )
    args.document.update(
        jobs=[_job_json(job) for job in results], paths={"history": path_text(history)}
    )
    return _print_results(results)
