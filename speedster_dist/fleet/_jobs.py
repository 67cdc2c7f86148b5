"""One model to optimize, described by files and settings: a CLI run or a sweep job."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from speedster_dist.artifacts import KIT_DIR, KIT_FILE, sha256_file, write_kit
from speedster_dist.fleet._loading import detect_inputs, detect_model, read_inputs, read_model
from speedster_dist.learner import HardwareKeyedLearner
from speedster_dist.measure import MeasureSettings
from speedster_dist.options import check_output_folder, parse_run_options
from speedster_dist.present import say
from speedster_dist.records import TrialResult

__all__ = ["JOB_OPTIONS", "JobSpec", "optimization_time", "run_job"]


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
    # The model's name in the history (default: ``name``). A sweep job's settings share it:
    # one model, several learners (``name``), one subject of the report.
    model_name: str = ""
    node_groups: tuple[str, ...] = ()  # () : the cluster's own groups (docs/cluster.md)
    group_wait: float = 600.0
    # Where the Optuna studies live: a storage URL, a journal file or a folder (default: the
    # cache). Text, not a Path: "sqlite:///x.db" must keep its slashes.
    study_storage: str | None = None
    resume: bool = False  # continue this job's stored studies (finished trials are kept)
    prices: Path | None = None  # a prices.yaml: cost per 1M inferences in the summary
    # What "best" means and the constraints (docs/throughput.md), as optimize_model takes them.
    objective: str = "latency"
    batch_sizes: tuple[int, ...] = ()  # () : the objective's default load points
    concurrency: tuple[int, ...] = ()
    latency_budget_ms: float | None = None
    latency_percentile: float = 99.0
    max_memory_mb: float | None = None
    # Generation (docs/generation.md): "" decides from the model; "forward" never generates.
    task: str = ""
    max_new_tokens: int = 32

    @property
    def kit_path(self) -> Path | None:
        """Where the rebench kit is written (None: no learner saved, or ``kit`` off)."""
        return self.out / KIT_DIR if self.out is not None and self.kit else None

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
            **self.serving(),
            **self.generation(),
        }

    def generation(self) -> dict[str, Any]:
        """The generation task and length, as ``optimize_model``'s keywords."""
        return {"task": self.task or None, "max_new_tokens": self.max_new_tokens}

    def serving(self) -> dict[str, Any]:
        """The objective and its constraints, as ``optimize_model``'s keywords."""
        return {
            "objective": self.objective,
            "batch_sizes": list(self.batch_sizes) or None,
            "concurrency": list(self.concurrency) or None,
            "latency_budget_ms": self.latency_budget_ms,
            "latency_percentile": self.latency_percentile,
            "max_memory_mb": self.max_memory_mb,
        }

    def validate(self, history: Path | None = None) -> None:
        """Check the search settings now (InputError), before any model loads or Ray starts:
        the same checks ``optimize_model`` makes, NaN and infinity thresholds included; and
        ``out`` (and ``history``, the command's ``--history``) is a folder that can be
        written (found after the search, the learner would be lost)."""
        if self.out is not None:
            check_output_folder("out", self.out)
        if history is not None:
            check_output_folder("--history", history)
        parse_run_options(
            metric_drop_ths=self.metric_drop_ths,
            metric=self.metric,
            optimization_time=optimization_time(self.optimization_time),
            ignore_compilers=self.ignore_compilers,
            ignore_compressors=self.ignore_compressors,
            device=self.device,
            extras={
                "trial_timeout": self.trial_timeout,
                "batch_size": self.batch_size,
                **self.fleet(),
                **self.serving(),
                **self.generation(),
            },
        )

    def fleet(self) -> dict[str, Any]:
        """The cluster and study settings of ``optimize_model`` this job sets."""
        groups: list[str] | str | None = list(self.node_groups) or None
        if groups and len(groups) == 1 and groups[0].endswith((".yaml", ".yml")):
            groups = groups[0]  # a cluster YAML that declares the groups
        return {
            "node_groups": groups,
            "group_wait": self.group_wait,
            "study_storage": self.study_storage,
            "resume": self.resume,
            "prices": str(self.prices) if self.prices else None,
        }


# Settings a sweep job may give (everything but its name).
JOB_OPTIONS = frozenset(f.name for f in fields(JobSpec)) - {"name", "model_name"}


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
    on_trial: Callable[[TrialResult], Any] | None = None,
) -> HardwareKeyedLearner:
    """Load, optimize, save the learner and its kit; returns the learner."""
    from speedster_dist.api import optimize_model
    from speedster_dist.results import HistoryTarget

    spec.validate(history)
    model_source = detect_model(spec.model, spec.model_class)
    input_source = detect_inputs(
        spec.inputs, model_source, spec.tokenizer, spec.max_length, spec.batch_size
    )
    say(f"{spec.name}: loading the {model_source.kind} model {spec.model}")
    model = read_model(model_source)
    input_data, tokenizer, tokenizer_args = read_inputs(input_source)
    target = None
    if history is not None:
        learner_name = spec.out.name if spec.out is not None else ""
        model_name = spec.model_name or spec.name
        target = HistoryTarget(history, "", run_kind, model_name, learner_name, on_trial)
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
        measure_settings=MeasureSettings.quick() if quick else None,
        progress=progress,
        history=target,
        **spec.fleet(),
        **spec.serving(),
        **spec.generation(),
    )
    if spec.out is not None:
        learner.about["model"] = spec.model_name or spec.name  # the card names the job's model
        kit_sha256 = None
        if spec.kit:  # first: the learner's manifest records (and its signature covers) it
            name = spec.model_name or spec.name  # the rebench records the same model name
            kit = write_kit(spec.out, name, model_source, input_source, spec.search_options())
            kit_sha256 = sha256_file(kit / KIT_FILE)
        learner.save(spec.out, kit_sha256=kit_sha256)
        say(f"{spec.name}: learner saved to {spec.out} ({', '.join(learner.hardware_types())})")
    return learner
