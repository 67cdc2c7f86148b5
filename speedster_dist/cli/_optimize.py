"""``speedster-dist optimize``: one model, its learner, its rebench kit, its history."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from speedster_dist.cli._common import EXIT_OK, CliError, connect_cluster, measure_settings, say
from speedster_dist.cli._kit import write_kit
from speedster_dist.cli._loading import (
    detect_inputs,
    detect_model,
    load_inputs,
    load_model,
)

__all__ = ["JOB_OPTIONS", "JobSpec", "add_parser", "add_search_options", "run_job"]


@dataclass(frozen=True)
class JobSpec:
    """One ``optimize_model`` call described by files and settings (a CLI run or a sweep job)."""

    name: str
    model: Path
    inputs: Path
    tokenizer: Path | None = None
    model_class: str = "AutoModel"
    max_length: int | None = None
    batch_size: int = 1
    metric_drop_ths: float | None = None
    metric: str = "numeric_precision"
    optimization_time: str | float = "constrained"
    device: str | None = None
    ignore_compilers: tuple[str, ...] = ()
    ignore_compressors: tuple[str, ...] = ()
    trial_timeout: float = 900.0
    out: Path | None = None
    kit: bool = True

    def search_options(self) -> dict[str, Any]:
        """The settings a rebench needs to search a new hardware type the same way."""
        return {
            "metric_drop_ths": self.metric_drop_ths,
            "metric": self.metric,
            "optimization_time": self.optimization_time,
            "device": self.device,
            "ignore_compilers": list(self.ignore_compilers),
            "ignore_compressors": list(self.ignore_compressors),
            "trial_timeout": self.trial_timeout,
        }


# Settings a sweep job may give (everything but its name).
JOB_OPTIONS = frozenset(f.name for f in fields(JobSpec)) - {"name"}


def optimization_time(value: str | float) -> str | float:
    """``constrained``, ``unconstrained`` or seconds (a number, possibly given as text)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        return text


def run_job(
    spec: JobSpec,
    history: Path | None,
    run_kind: str = "optimize",
    quick: bool = False,
    progress: bool = True,
    on_trial: Callable[[Any], Any] | None = None,
) -> Any:
    """Load, optimize, save the learner and its kit; returns the learner."""
    from speedster_dist import optimize_model
    from speedster_dist.results import HistoryTarget

    model_source = detect_model(spec.model, spec.model_class)
    input_source = detect_inputs(
        spec.inputs, model_source, spec.tokenizer, spec.max_length, spec.batch_size
    )
    say(f"{spec.name}: loading the {model_source.kind} model {spec.model}")
    model = load_model(model_source)
    input_data, tokenizer, tokenizer_args = load_inputs(input_source)
    target = None
    if history is not None:
        learner_name = spec.out.name if spec.out is not None else ""
        target = HistoryTarget(history, "", run_kind, spec.name, learner_name, on_trial)
    learner = optimize_model(
        model,
        input_data,
        metric_drop_ths=spec.metric_drop_ths,
        metric=spec.metric,
        optimization_time=optimization_time(spec.optimization_time),
        ignore_compilers=list(spec.ignore_compilers),
        ignore_compressors=list(spec.ignore_compressors),
        device=spec.device,
        tokenizer=tokenizer,
        tokenizer_args=tokenizer_args,
        batch_size=spec.batch_size,
        trial_timeout=spec.trial_timeout,
        measure_settings=measure_settings(quick),
        progress=progress,
        history=target,
    )
    if spec.out is not None:
        learner.save(spec.out)
        say(f"{spec.name}: learner saved to {spec.out} ({', '.join(learner.hardware_types())})")
        if spec.kit:
            write_kit(spec.out, spec.name, model_source, input_source, spec.search_options())
    return learner


def add_search_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``optimize`` (and documented for sweep jobs under the same names)."""
    parser.add_argument(
        "--inputs", required=True, type=Path, help=".json/.jsonl/.txt texts or .npz"
    )
    parser.add_argument("--tokenizer", type=Path, help="tokenizer folder (default: the model's)")
    parser.add_argument("--model-class", default="AutoModel", help="transformers Auto class")
    parser.add_argument("--max-length", type=int, help="pad/truncate texts to this many tokens")
    parser.add_argument("--batch-size", type=int, default=1, help="samples per call (default 1)")
    parser.add_argument("--metric-drop-ths", type=float, help="accepted metric drop (default 0)")
    parser.add_argument(
        "--metric", default="numeric_precision", choices=["numeric_precision", "accuracy"]
    )
    parser.add_argument(
        "--optimization-time",
        default="constrained",
        help="constrained (default), unconstrained, or a budget in seconds",
    )
    parser.add_argument("--device", choices=["cpu", "gpu"], help="only this device kind")
    parser.add_argument("--ignore-compilers", default="", help="comma-separated backend names")
    parser.add_argument("--ignore-compressors", default="", help="comma-separated techniques")
    parser.add_argument("--trial-timeout", type=float, default=900.0, help="seconds per trial")


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "optimize",
        help="optimize one model for every hardware type of the cluster",
        description="Optimize MODEL (a Hugging Face folder, .onnx, TorchScript or .pt2 file).",
    )
    parser.add_argument("model", type=Path)
    add_search_options(parser)
    parser.add_argument("--out", type=Path, help="save the learner (and its rebench kit) here")
    parser.add_argument("--history", type=Path, help="append every trial to this history")
    parser.add_argument("--name", help="model name in the history (default: the file name)")
    parser.add_argument("--no-kit", action="store_true", help="do not write the rebench kit")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.out is None:
        say("no --out given: the learner is not saved (only the summary is printed)")
    spec = JobSpec(
        name=args.name or args.model.stem or args.model.name,
        model=args.model,
        inputs=args.inputs,
        tokenizer=args.tokenizer,
        model_class=args.model_class,
        max_length=args.max_length,
        batch_size=args.batch_size,
        metric_drop_ths=args.metric_drop_ths,
        metric=args.metric,
        optimization_time=args.optimization_time,
        device=args.device,
        ignore_compilers=_names(args.ignore_compilers),
        ignore_compressors=_names(args.ignore_compressors),
        trial_timeout=args.trial_timeout,
        out=args.out,
        kit=not args.no_kit,
    )
    # Fail on a bad path before Ray starts.
    model = detect_model(spec.model, spec.model_class)
    detect_inputs(spec.inputs, model, spec.tokenizer, spec.max_length, spec.batch_size)
    if spec.trial_timeout <= 0:
        raise CliError("--trial-timeout must be positive")
    connect_cluster(args.cluster or "auto")
    run_job(spec, args.history, quick=args.quick_measure, progress=not args.quiet)
    return EXIT_OK
