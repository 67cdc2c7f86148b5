"""``speedster-dist optimize``: one model, its learner, its rebench kit, its history."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from speedster_dist.cli._common import EXIT_OK, connect_cluster
from speedster_dist.cli._fleet_options import add_fleet_options, fleet_settings
from speedster_dist.fleet import (
    JobSpec,
    check_sample_count,
    detect_inputs,
    detect_model,
    learner_json,
    path_text,
    run_job,
)
from speedster_dist.measure import BUILTIN_METRICS
from speedster_dist.naming import model_name
from speedster_dist.present import say
from speedster_dist.serving import OBJECTIVES

__all__ = ["add_parser", "add_search_options"]


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
    parser.add_argument("--metric", default="numeric_precision", choices=sorted(BUILTIN_METRICS))
    parser.add_argument(
        "--optimization-time",
        default="constrained",
        help="constrained (default), unconstrained, or a budget in seconds",
    )
    parser.add_argument("--device", choices=["cpu", "gpu"], help="only this device kind")
    parser.add_argument("--ignore-compilers", default="", help="comma-separated backend names")
    parser.add_argument("--ignore-compressors", default="", help="comma-separated techniques")
    parser.add_argument("--trial-timeout", type=float, default=900.0, help="seconds per trial")
    add_objective_options(parser)
    add_generation_options(parser)
    add_fleet_options(parser)


# The transformers Auto class a generation task loads when --model-class is left as it is.
_TASK_CLASSES = {
    "text-generation": "AutoModelForCausalLM",
    "text2text-generation": "AutoModelForSeq2SeqLM",
}


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """Generation (docs/generation.md): ``generate()`` timed with its KV cache."""
    parser.add_argument(
        "--task",
        choices=["text-generation", "text2text-generation", "forward"],
        help="text-generation / text2text-generation: optimize generate() (the model loads "
        "as AutoModelForCausalLM / AutoModelForSeq2SeqLM unless --model-class says "
        "otherwise); forward: one forward pass (default: decided by the model)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=32,
        help="tokens each timed generation produces (default 32)",
    )


def generation_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The JobSpec fields the generation options give (and the model class they imply)."""
    settings: dict[str, Any] = {"task": args.task or "", "max_new_tokens": args.max_new_tokens}
    if args.task in _TASK_CLASSES and args.model_class == "AutoModel":
        settings["model_class"] = _TASK_CLASSES[args.task]
    return settings


def add_objective_options(parser: argparse.ArgumentParser) -> None:
    """What "best" means and the constraints (docs/throughput.md)."""
    parser.add_argument(
        "--objective",
        default="latency",
        choices=list(OBJECTIVES),
        help="latency (default: p50 at the samples' batch), throughput (requests/s at the "
        "best load point) or cost (per 1M requests; needs --prices)",
    )
    parser.add_argument(
        "--batch-sizes", type=_numbers, help="requests per call to explore, e.g. 1,8,32"
    )
    parser.add_argument("--concurrency", type=_numbers, help="calls in flight to explore, e.g. 1,2")
    parser.add_argument(
        "--latency-budget-ms", type=float, help="the most a request's tail latency may be"
    )
    parser.add_argument(
        "--latency-percentile", type=float, default=99.0, help="the budget's percentile (99)"
    )
    parser.add_argument("--max-memory-mb", type=float, help="the most a candidate may add (MB)")


def _numbers(text: str) -> tuple[int, ...]:
    """``1,8,32`` as whole numbers (their range is checked with the other settings)."""
    try:
        numbers = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        numbers = ()
    if not numbers:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers separated by commas, such as 1,8,32; got {text!r}"
        )
    return numbers


def objective_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The JobSpec fields the objective options give."""
    return {
        "objective": args.objective,
        "batch_sizes": args.batch_sizes or (),
        "concurrency": args.concurrency or (),
        "latency_budget_ms": args.latency_budget_ms,
        "latency_percentile": args.latency_percentile,
        "max_memory_mb": args.max_memory_mb,
    }


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "optimize",
        help="optimize one model for every hardware type of the cluster",
        description="Optimize MODEL (a Hugging Face folder or model id 'org/name' from the local "
        "Hugging Face cache, an .onnx, TorchScript or .pt2 file).",
    )
    parser.add_argument("model", help="folder, file, or Hugging Face model id (org/name)")
    parser.add_argument(
        "--allow-download",
        action="store_true",
        help="fetch a model id missing from the local Hugging Face cache from the Hub "
        "(safetensors weights only; default: offline)",
    )
    add_search_options(parser)
    parser.add_argument("--out", type=Path, help="save the learner (and its rebench kit) here")
    parser.add_argument("--history", type=Path, help="append every trial to this history")
    parser.add_argument(
        "--name",
        help="model name in the history (default: the config's _name_or_path, else the "
        "file or folder name; a generic 'model' folder is named after its parent)",
    )
    parser.add_argument("--no-kit", action="store_true", help="do not write the rebench kit")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout (docs/cli.md)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.out is None:
        say("no --out given: the learner is not saved (only the summary is printed)")
    spec = JobSpec(
        name=args.name or model_name(args.model),
        model=Path(args.model),
        inputs=args.inputs,
        tokenizer=args.tokenizer,
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
        **fleet_settings(args),
        **objective_settings(args),
        **{"model_class": args.model_class, **generation_settings(args)},
    )
    # Fail on a bad setting or path before Ray starts (and before anything is downloaded).
    spec.validate(args.history)
    model = detect_model(args.model, spec.model_class, allow_download=args.allow_download)
    if model.path != spec.model:  # a model id: its snapshot in the Hugging Face cache
        spec = replace(spec, model=model.path, name=args.name or args.model)
    inputs = detect_inputs(spec.inputs, model, spec.tokenizer, spec.max_length, spec.batch_size)
    check_sample_count(inputs)
    connect_cluster(args.cluster or "auto")
    learner = run_job(spec, args.history, quick=args.quick_measure, progress=not args.quiet)
    args.document.update(  # --json: the winners, every trial, what was written where
        model={"name": spec.name, "path": str(spec.model)},
        **learner_json(learner),
        paths={
            "learner": path_text(spec.out),
            "kit": path_text(spec.kit_path),
            "history": path_text(args.history),
        },
    )
    return EXIT_OK
