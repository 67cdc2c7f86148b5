"""``optimize_model``: Speedster's four steps, on every hardware type of a Ray cluster.

1. validate every setting (:mod:`speedster_dist.options`) and prepare the model and samples
   (:mod:`speedster_dist.prepare`): whatever is wrong with the user's input fails here,
   before Ray is touched or any trial is scheduled;
2. connect to a cluster (or start an embedded Ray) and search each hardware type;
3. keep the winner of each type in one learner, called exactly like the model;
4. print Speedster's summary (unless ``verbose=False``); the caller saves the learner with
   ``.save(path)``. Warnings go through :mod:`warnings`, the rest of what happens through
   :mod:`logging` (the ``speedster_dist`` loggers; the CLI shows them with ``-v``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from speedster_dist.errors import InputError
from speedster_dist.generation import generation_options, generation_task, prepare_generation
from speedster_dist.hub import open_model
from speedster_dist.learner import HardwareKeyedLearner
from speedster_dist.learner_builder import learner_from_outcome
from speedster_dist.measure import MetricFn, resolve_metric
from speedster_dist.naming import describe_model
from speedster_dist.options import RunOptions, parse_run_options
from speedster_dist.prepare import eval_model, prepare
from speedster_dist.present import SearchProgress, format_summary, print_summary
from speedster_dist.records import SearchOutcome, TrialResult
from speedster_dist.runtime import Executor, SearchHooks, SearchRequest, onnx_portable, run_search
from speedster_dist.runtime.ray import RayExecutor, connect, package_runtime_env
from speedster_dist.sentence import is_sentence_transformer

__all__ = ["optimize_model"]

logger = logging.getLogger(__name__)


def optimize_model(
    model: torch.nn.Module | str | Path,
    input_data: Any,
    metric_drop_ths: float | None = None,
    metric: str | MetricFn | None = None,
    optimization_time: str | float = "constrained",
    dynamic_info: Mapping[str, Any] | None = None,
    config_file: str | None = None,
    ignore_compilers: Sequence[str] | None = None,
    ignore_compressors: Sequence[str] | None = None,
    store_latencies: bool = False,
    device: str | None = None,
    tokenizer: Any = None,
    tokenizer_args: Mapping[str, Any] | None = None,
    *,
    executor: Executor | None = None,
    **kwargs: Any,
) -> HardwareKeyedLearner:
    """Find the fastest accurate way to run ``model`` on every hardware type of the cluster.

    ``model``: a ``torch.nn.Module``; a ``SentenceTransformer`` (its transformer is optimized,
    the learner gains ``encode``, and ``metric`` defaults to ``"cosine"``); an ``.onnx`` path;
    a Hugging Face folder or model id (``"org/name"``), resolved from the local Hugging Face
    cache: ``allow_download=True`` lets it be fetched from the Hub, ``trust_remote_code=True``
    lets code shipped with it run; weights load from safetensors only (docs/getting-started.md).
    Arguments keep Speedster's meanings. ``metric_drop_ths`` None or 0 allows no precision
    reduction; fp16/bf16 are tried above 0 and int8 above 0.02 (a finite number >= 0).
    ``optimization_time`` is ``"constrained"`` (default knobs, 10-minute budget),
    ``"unconstrained"`` or seconds. ``device`` None searches every hardware type the cluster
    has; ``"cpu"`` or ``"gpu"`` (``"cuda"``, ``"cuda:N"``) only that kind. Extra keyword
    arguments: ``cluster`` ("auto", "local" or an address), ``trial_timeout`` (seconds),
    ``verbose`` (None, the default: the summary is printed; True: every trial too; False:
    nothing is printed, progress included; warnings still go through :mod:`warnings`),
    ``batch_size`` (for string inputs), ``measure_settings`` (:class:`MeasureSettings`),
    ``progress`` (the progress display on stderr; default True), ``study_storage`` (where
    the Optuna studies live: a storage URL as Optuna takes it, ``sqlite:///studies.db``,
    ``postgresql://...``; a journal file; a folder, one journal file per study; or an
    ``optuna.storages`` object;
    default ``~/.cache/speedster-dist/studies/``; studies are named
    ``<model>-<hardware type>-<hash>``), ``resume`` (continue the stored study of the same
    model, hardware type and settings; default False: start over), ``searcher`` ("optuna",
    the default, or "exhaustive"), ``search_seed`` (default 0) (docs/search.md),
    ``runtime_env`` (the Ray job's runtime environment, or ``"package"`` to ship this
    speedster_dist to nodes where it is not installed; docs/cluster.md), ``history`` (a
    folder, or a :class:`speedster_dist.results.HistoryTarget`): every trial is appended to
    that Parquet history as soon as it finishes (docs/cli.md). ``executor`` (keyword only): run
    the trials there instead of on Ray (tests, benchmarks; see :mod:`speedster_dist.runtime`).
    ``confirm_rounds`` (default 5; 0: off) and ``confirm_top`` (default 3): after the search,
    the baseline and the ``confirm_top`` fastest candidates of each hardware type are re-timed
    side by side, in alternating order over ``confirm_rounds`` rounds, on a node of that type;
    the summary's speedup is that confirmed figure, and the confirmed fastest wins
    (docs/search.md). With a ``history``, the search tries first what the history measured
    fastest on the same hardware type, and its earlier winners before anything else.
    ``node_groups`` (group names, or a cluster YAML; default: the groups of the cluster's nodes
    and autoscaler config) and ``group_wait`` (seconds, default 600): on Ray, one node of each
    group is asked of the autoscaler for the length of the search and awaited that long
    (docs/cluster.md). ``prices`` (a prices.yaml path or a mapping: node group or hardware
    type -> price per hour): the summary adds each winner's cost per 1M inferences, the
    fastest and the cheapest hardware type.
    ``objective`` ("latency", the default: the lowest p50 at the samples' batch; "throughput":
    the most requests a second at a load point; "cost": per 1M requests, needs ``prices``),
    ``batch_sizes`` and ``concurrency`` (the load points explored: requests per call, calls
    in flight; throughput and cost only), ``latency_budget_ms`` (on each request's
    ``latency_percentile``, default 99) and ``max_memory_mb``: points over either are
    recorded as infeasible, never chosen; each winner's operating point is the learner's
    (``operating_point()``, ``run_many``; docs/throughput.md).

    ``task`` (``"text-generation"``, ``"text2text-generation"``, ``"forward"``; default: a
    model that can ``generate()`` and is not an encoder-decoder is optimized for generation,
    anything else for its forward pass) and ``max_new_tokens`` (default 32): a generation
    search times whole greedy ``generate()`` calls of that many tokens (the fastest has the
    most tokens a second), judges candidates by greedy agreement with the original's tokens
    and the prefill logits' cosine, and its learner gains ``generate()``
    (docs/generation.md).

    Returns a learner called exactly like ``model``; ``.save(path)`` writes it to disk.
    """
    if config_file is not None:
        raise InputError("config_file is not supported: pass the settings as arguments")
    options = parse_run_options(
        metric_drop_ths=metric_drop_ths,
        metric=metric,
        optimization_time=optimization_time,
        ignore_compilers=ignore_compilers,
        ignore_compressors=ignore_compressors,
        device=device,
        extras=kwargs,
    )
    model = open_model(model, options.allow_download, options.trust_remote_code)
    model = eval_model(model)  # the caller's module keeps its training flags
    if metric is None and is_sentence_transformer(model):  # embeddings: compared by angle
        options = replace(options, metric=resolve_metric("cosine"))
    task = generation_task(model, options.task)
    if task:  # generate(): judged by greedy agreement (and the prefill's cosine)
        options = generation_options(options)
    name = _model_name(options, model)
    if task:
        assert isinstance(model, torch.nn.Module)  # generation_task() said it generates
        prepared = prepare_generation(model, input_data, options, task, tokenizer, tokenizer_args)
    else:
        prepared = prepare(model, input_data, options, dynamic_info, tokenizer, tokenizer_args)
    logger.info(
        "optimizing %s: metric %s, accepted drop %s, budget %s",
        name,
        options.metric_name,
        options.metric_drop_ths,
        options.budget.label,
    )
    payload = prepared.payload
    executor = executor if executor is not None else _ray_executor(options)
    observer = _trial_observer(options, model, payload.source.fingerprint, prepared.batch)
    try:
        request = SearchRequest(
            payload=payload,
            settings=options.space_settings(payload.source, held_in=len(payload.calibration)),
            budget=options.budget,
            devices=options.devices,
            make_searcher=options.searcher_factory(payload.source.fingerprint, name),
            hooks=SearchHooks(on_result=observer, on_plan=observer.plan),
            confirm_rounds=options.confirm_rounds,
            confirm_top=options.confirm_top,
            # On Ray: every declared node group asked of the autoscaler (docs/cluster.md).
            demand=executor.group_demand(options.node_groups, options.group_wait_s),
        )
        outcome = run_search(executor, request)
        observer.confirmed(outcome)  # the confirmed figures join the trials in the history
    finally:
        observer.close()
    logger.info(
        "search over: %d trials, winners on %s", len(outcome.results), list(outcome.winners)
    )
    # Generation: the baseline's files (safetensors) are the portable fallback.
    portable = None if task else lambda: onnx_portable(payload)
    learner = learner_from_outcome(outcome, prepared.io, portable)
    learner.encoder = prepared.encoder
    learner.about = {  # for the model card
        "model": name,
        "metric": options.metric_name,
        "metric_drop_ths": options.metric_drop_ths,
        "batch_size": prepared.batch,
    }
    if task:
        learner.about.update(task=task, max_new_tokens=options.max_new_tokens)
    summary = (
        outcome,
        prepared.batch,
        options.metric_name,
        options.metric_drop_ths,
        options.prices,
    )
    loads = learner.default_loads()  # a program winner: what a saved learner loads instead
    learner.summary = format_summary(*summary, loads=loads)  # plain: it is kept and saved
    if options.verbose is not False:  # None (the default) or True: the summary
        shown = outcome.results if store_latencies or options.verbose else ()
        print_summary(*summary, trials=shown, loads=loads)
    return learner


def _model_name(options: RunOptions, model: Any) -> str:
    """The model's name in its study: the history's name for it when one was given (a CLI
    run or a sweep job), else what the model says it is (a model loaded by its Hugging
    Face id says that id)."""
    named = getattr(options.history, "model_name", "")
    if isinstance(named, str) and named:
        return named
    name = describe_model(model)
    if name == type(model).__name__ and is_sentence_transformer(model):  # it says nothing
        name = describe_model(model[0].auto_model)  # (sentence-transformers before 6)
    return name


class _Recorder(SearchProgress):
    """The display, plus one history row per finished trial."""

    def __init__(self, writer: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.writer = writer

    def __call__(self, result: TrialResult) -> None:
        self.writer.append(result)
        super().__call__(result)

    def confirmed(self, outcome: SearchOutcome) -> None:
        """One history row per re-timed contender (the baseline and the best candidates of
        each confirmed hardware type): the confirmed figures are measurements too."""
        for confirmation in outcome.confirmed.values():
            self.writer.append_confirmation(confirmation, outcome.results)


def _trial_observer(
    options: RunOptions, model: Any, fingerprint: str, batch: int
) -> SearchProgress:
    """The progress display, plus one history row per trial when ``history=`` is given:
    every trial is written as soon as it finishes, so nothing measured is lost later.
    Pass it as the driver's ``on_result``, its ``plan`` as ``on_plan``; give it the outcome
    (``confirmed``) to record the confirmation, and ``close()`` it after."""
    shown: dict[str, Any] = {
        "enabled": options.progress and options.verbose is not False,  # False: nothing printed
        "budget_s": options.budget.seconds,
    }
    if options.history is None:
        return SearchProgress(**shown)
    from speedster_dist.results import open_history

    quick = options.measure.brief
    writer = open_history(
        options.history, model, fingerprint, batch, options.history_settings(), quick
    )
    return _Recorder(writer, **shown)


def _ray_executor(options: RunOptions) -> Executor:
    """Ray, connected (or started) now, after validation."""
    runtime_env = package_runtime_env() if options.runtime_env == "package" else options.runtime_env
    connect(options.cluster, runtime_env)
    return RayExecutor(trial_timeout_s=options.trial_timeout_s)
