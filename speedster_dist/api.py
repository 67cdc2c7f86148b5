"""``optimize_model``: validate everything, normalise inputs, hand the search to the driver.

Every check that can fail on the user's input runs here, before Ray is touched or any trial
is scheduled, and says what was wrong and how to fix it.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from speedster_dist.backends import BASELINE_BACKEND, SourceModel, resolve_backend_name
from speedster_dist.cache import cache_root
from speedster_dist.inputs import InputError, SampleSet, normalize_inputs
from speedster_dist.learner import HardwareKeyedLearner, LearnerIO, WinnerEntry
from speedster_dist.measure import MeasureSettings, MetricFn, resolve_metric
from speedster_dist.modelio import OutputSpec, derive_dynamic_axes, make_source_model
from speedster_dist.records import DeviceKind, TrialResult
from speedster_dist.runtime import (
    Executor,
    RayExecutor,
    SearchOutcome,
    TrialPayload,
    connect,
    package_runtime_env,
    run_search,
)
from speedster_dist.search import (
    DEFAULT_SEED,
    Budget,
    ExhaustiveSearcher,
    SearcherFactory,
    SpaceSettings,
    optuna_searcher_factory,
    parse_optimization_time,
)
from speedster_dist.summary import format_summary, format_trials, progress_line

__all__ = ["optimize_model", "prepare_payload"]

_COMPRESSORS = frozenset(
    {
        "fp16",
        "bf16",
        "int8",
        "int8_dynamic",
        "int8_static",
        "half_precision",
        "dynamic_quantization",
        "static_quantization",
    }
)
_SPEEDSTER_COMPRESSORS = frozenset(
    {"sparseml", "intel_pruning"}
)  # not shipped: ignoring is a no-op
_EXTRA_KWARGS = frozenset(
    {
        "cluster",
        "trial_timeout",
        "verbose",
        "batch_size",
        "measure_settings",
        "executor",
        "progress",
        "runtime_env",
        "study_storage",
        "resume",
        "searcher",
        "search_seed",
        "history",
    }
)
_SEARCHERS = ("optuna", "exhaustive")


@dataclass(frozen=True)
class _Options:
    budget: Budget
    metric: MetricFn
    metric_drop_ths: float | None
    ignored_backends: frozenset[str]
    ignored_compressors: frozenset[str]
    devices: frozenset[DeviceKind]


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
    **kwargs: Any,
) -> HardwareKeyedLearner:
    """Find the fastest accurate way to run ``model`` on every hardware type of the cluster.

    Arguments keep Speedster's meanings. ``metric_drop_ths`` None or 0 allows no precision
    reduction; fp16/bf16 are tried above 0 and int8 above 0.02. ``optimization_time`` is
    ``"constrained"`` (default knobs, 10-minute budget), ``"unconstrained"`` or seconds.
    ``device`` None searches every hardware type the cluster has; ``"cpu"`` or ``"gpu"``
    (``"cuda"``, ``"cuda:N"``) only that kind. Extra keyword arguments: ``cluster``
    ("auto" or an address), ``trial_timeout`` (seconds), ``verbose``, ``batch_size`` (for
    string inputs), ``measure_settings`` (:class:`MeasureSettings`), ``progress``,
    ``study_storage`` (where the Optuna studies live: a directory, a file or any Optuna
    storage URL; default ``~/.cache/speedster-dist/studies/``), ``resume`` (continue the
    stored study of the same model, hardware type and settings; default False: start over),
    ``searcher`` ("optuna", the default, or "exhaustive"), ``search_seed`` (default 0)
    (docs/search.md), ``runtime_env`` (the Ray job's runtime environment, or ``"package"`` to
    ship this speedster_dist to nodes where it is not installed; docs/cluster.md).
    ``history`` (a folder, or a :class:`speedster_dist.results.HistoryTarget`)
    appends every trial to that Parquet history as soon as it finishes (docs/cli.md).

    Returns a learner called exactly like ``model``; ``.save(path)`` writes it to disk.
    """
    unknown = set(kwargs) - _EXTRA_KWARGS
    if unknown:
        raise TypeError(
            f"optimize_model got unexpected arguments {sorted(unknown)}; "
            f"accepted extras are {sorted(_EXTRA_KWARGS)}"
        )
    if config_file is not None:
        raise InputError("config_file is not supported: pass the settings as arguments")
    options = _validate_options(
        metric_drop_ths, metric, optimization_time, ignore_compilers, ignore_compressors, device
    )
    make_searcher = _searcher_factory(kwargs)
    payload, io, batch = _prepare(
        model,
        input_data,
        options,
        dynamic_info,
        tokenizer,
        tokenizer_args,
        kwargs.get("batch_size", 1),
        kwargs.get("measure_settings"),
    )
    executor: Executor | None = kwargs.get("executor")
    if executor is None:
        runtime_env = _runtime_env(kwargs.get("runtime_env"))
        connect(_cluster_address(kwargs.get("cluster", "auto")), runtime_env)
        executor = RayExecutor(trial_timeout_s=float(kwargs.get("trial_timeout", 900.0)))
    settings = SpaceSettings(
        metric_drop_ths=options.metric_drop_ths,
        source_format=payload.source.source_format,
        ignored_backends=options.ignored_backends,
        ignored_compressors=options.ignored_compressors,
        tune_knobs=options.budget.tune_knobs,
        baseline_backend=BASELINE_BACKEND if payload.source.module is not None else "onnxruntime",
    )
    outcome = run_search(
        executor,
        payload,
        settings,
        options.budget,
        on_result=_on_result(kwargs, model, payload, batch, options),
        make_searcher=make_searcher(payload, options),
        devices=options.devices,
    )
    learner = _learner(outcome, io)
    learner.summary = format_summary(outcome, batch)
    print(learner.summary, file=sys.stdout)
    if store_latencies or kwargs.get("verbose", False):
        print(format_trials(outcome.results), file=sys.stdout)
    return learner


def _searcher_factory(
    kwargs: Mapping[str, Any],
) -> Callable[[TrialPayload, _Options], SearcherFactory]:
    """Validate the search extras now; build the factory once the model is known."""
    kind = kwargs.get("searcher", "optuna")
    if kind not in _SEARCHERS:
        raise InputError(f"searcher must be one of {list(_SEARCHERS)}, got {kind!r}")
    seed = kwargs.get("search_seed", DEFAULT_SEED)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"search_seed must be an int, got {seed!r}")
    storage = kwargs.get("study_storage") or Path(cache_root()) / "studies"
    resume = bool(kwargs.get("resume", False))

    def build(payload: TrialPayload, options: _Options) -> SearcherFactory:
        if kind == "exhaustive":
            return lambda hardware, space: ExhaustiveSearcher(space)
        identity = {
            "metric_drop_ths": options.metric_drop_ths,
            "metric": getattr(options.metric, "__qualname__", repr(options.metric)),
            "optimization_time": options.budget.label,
            "ignored_backends": sorted(options.ignored_backends),
            "ignored_compressors": sorted(options.ignored_compressors),
        }
        fingerprint = _study_fingerprint(payload.source)
        return optuna_searcher_factory(storage, fingerprint, identity, resume=resume, seed=seed)

    return build


def _study_fingerprint(source: SourceModel) -> str:
    if source.fingerprint or source.onnx_path is None:
        return source.fingerprint
    digest = hashlib.sha256()  # an ONNX file: its bytes identify the model
    with open(source.onnx_path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _validate_options(
    metric_drop_ths: float | None,
    metric: str | MetricFn | None,
    optimization_time: str | float,
    ignore_compilers: Sequence[str] | None,
    ignore_compressors: Sequence[str] | None,
    device: str | None,
) -> _Options:
    try:
        budget = parse_optimization_time(optimization_time)
        metric_fn = resolve_metric(metric)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    if metric_drop_ths is not None and (
        not isinstance(metric_drop_ths, int | float) or metric_drop_ths < 0
    ):
        raise InputError(f"metric_drop_ths must be None or a number >= 0, got {metric_drop_ths!r}")
    ignored = set()
    for name in ignore_compilers or ():
        try:
            resolved = resolve_backend_name(name)
        except ValueError as exc:
            raise InputError(f"ignore_compilers: {exc}") from exc
        if resolved == BASELINE_BACKEND:
            raise InputError("ignore_compilers cannot remove 'torch': it is the baseline")
        if resolved is not None:
            ignored.add(resolved)
    compressors = {c.strip().lower() for c in ignore_compressors or ()}
    bad = compressors - _COMPRESSORS - _SPEEDSTER_COMPRESSORS
    if bad:
        raise InputError(
            f"ignore_compressors: unknown {sorted(bad)}; valid names are {sorted(_COMPRESSORS)}"
        )
    return _Options(
        budget,
        metric_fn,
        metric_drop_ths,
        frozenset(ignored),
        frozenset(compressors),
        _devices(device),
    )


def _devices(device: str | None) -> frozenset[DeviceKind]:
    if device is None:
        return frozenset(DeviceKind)
    name = device.strip().lower()
    if name == "cpu":
        return frozenset({DeviceKind.CPU})
    if name in ("gpu", "cuda") or name.startswith("cuda:"):
        return frozenset({DeviceKind.GPU})
    raise InputError(f"device must be None, 'cpu', 'gpu', 'cuda' or 'cuda:N', got {device!r}")


def _prepare(
    model: torch.nn.Module | str | Path,
    input_data: Any,
    options: _Options,
    dynamic_info: Mapping[str, Any] | None,
    tokenizer: Any,
    tokenizer_args: Mapping[str, Any] | None,
    batch_size: int,
    measure: MeasureSettings | None,
) -> tuple[TrialPayload, LearnerIO, int]:
    if isinstance(model, str | Path):
        source, samples, io = _onnx_source(Path(model), input_data, dynamic_info)
    elif isinstance(model, torch.nn.Module):
        samples = normalize_inputs(input_data, model, tokenizer, tokenizer_args, batch_size)
        source, io = _torch_source(model, samples, dynamic_info)
    else:
        raise InputError(
            "model must be a torch.nn.Module or a path to an .onnx file, "
            f"got {type(model).__name__}"
        )
    if options.metric is resolve_metric("accuracy") and samples.labels is None:
        raise InputError(
            'metric="accuracy" needs labels: pass samples as ((inputs...), label) tuples'
        )
    calibration, validation, labels = _split(samples)
    reference = _reference_outputs(source, validation)
    payload = TrialPayload(
        source,
        calibration,
        validation,
        reference,
        labels,
        options.metric,
        options.metric_drop_ths,
        measure or MeasureSettings(),
    )
    batch = int(samples.samples[0][0].shape[0]) if samples.samples[0][0].dim() else 1
    return payload, io, batch


def _axes_from_dynamic_info(
    names: Sequence[str], specs: Sequence[Mapping[Any, Any]] | None
) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for name, spec in zip(names, specs or (), strict=False):
        axes[name] = {
            int(axis): tag if isinstance(tag, str) else f"{name}_dim{axis}"
            for axis, tag in spec.items()
        }
    return {k: v for k, v in axes.items() if v}


def _dynamic_axes(
    samples: SampleSet, dynamic_info: Mapping[str, Any] | None
) -> dict[str, dict[int, str]] | None:
    report = derive_dynamic_axes(samples.input_names, samples.samples)
    if dynamic_info is None:
        if report.problems:
            raise InputError(
                "samples differ in shape in a way dynamic axes cannot describe: "
                + "; ".join(report.problems)
                + ". Give samples of one rank per input."
            )
        return None  # derived by make_source_model, outputs included
    if not isinstance(dynamic_info, Mapping) or "inputs" not in dynamic_info:
        raise InputError('dynamic_info must be {"inputs": [{axis: name}, ...], "outputs": [...]}')
    axes = _axes_from_dynamic_info(samples.input_names, dynamic_info["inputs"])
    for name, varying in report.axes.items():
        undeclared = set(varying) - set(axes.get(name, {}))
        if undeclared:
            raise InputError(
                f"input {name!r} varies along axes {sorted(undeclared)} across samples, "
                "but dynamic_info does not declare them dynamic"
            )
    return axes


def _torch_source(
    model: torch.nn.Module, samples: SampleSet, dynamic_info: Mapping[str, Any] | None
) -> tuple[SourceModel, LearnerIO]:
    axes = _dynamic_axes(samples, dynamic_info)
    try:
        source, spec = make_source_model(
            model, samples.input_names, samples.samples, samples.keyword, axes
        )
    except Exception as exc:
        raise InputError(
            f"the model raised on the first sample: {type(exc).__name__}: {exc}"
        ) from exc
    if dynamic_info is not None and dynamic_info.get("outputs"):
        source.dynamic_axes.update(_axes_from_dynamic_info(spec.names, dynamic_info["outputs"]))
    output_class = _live_output_class(model, samples)
    return source, LearnerIO(samples.input_names, samples.keyword, spec, output_class)


def _live_output_class(model: torch.nn.Module, samples: SampleSet) -> type | None:
    # The exact class the user's model returns (possibly their own ModelOutput subclass):
    # used in this process; a loaded artifact re-resolves it from transformers only.
    assert isinstance(model, torch.nn.Module)
    from speedster_dist.modelio import FlatModule

    with torch.inference_mode():
        out = FlatModule(model, samples.input_names, samples.keyword).call_original(
            *samples.samples[0]
        )
    return type(out) if not isinstance(out, torch.Tensor | tuple | list | dict) else None


def _onnx_source(
    path: Path, input_data: Any, dynamic_info: Mapping[str, Any] | None
) -> tuple[SourceModel, SampleSet, LearnerIO]:
    if path.suffix != ".onnx" or not path.is_file():
        raise InputError(f"model path {path} is not an existing .onnx file")
    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:
        raise InputError(f"cannot read ONNX model {path}: {exc}") from exc
    initializers = {i.name for i in graph.initializer}
    names = tuple(i.name for i in graph.input if i.name not in initializers)
    outputs = tuple(o.name for o in graph.output)
    samples = normalize_inputs(input_data, None)
    data = samples.samples
    if samples.keyword:  # dicts: each value goes to the graph input of its key's name
        if set(samples.input_names) != set(names):
            raise InputError(
                f"the ONNX model takes inputs {list(names)}; the sample dicts have "
                f"keys {list(samples.input_names)}"
            )
        order = [samples.input_names.index(n) for n in names]
        data = [tuple(s[i] for i in order) for s in data]
    samples = SampleSet(names, data, samples.labels, keyword=False)
    if any(len(s) != len(names) for s in samples.samples):
        raise InputError(
            f"the ONNX model takes {len(names)} inputs {list(names)}; "
            "samples have a different count"
        )
    axes = _dynamic_axes(samples, dynamic_info) or derive_dynamic_axes(names, samples.samples).axes
    source = SourceModel(names, outputs, samples.samples[0], None, path, axes, fingerprint="")
    kind = "tensor" if len(outputs) == 1 else "tuple"
    spec = OutputSpec(kind, outputs)
    return source, samples, LearnerIO(names, False, spec)


def _split(samples: SampleSet) -> tuple[list[Any], list[Any], list[Any] | None]:
    """Speedster's 80/20 split into calibration and held-out validation samples."""
    data = samples.samples
    if len(data) == 1:
        return data, data, samples.labels  # nothing to hold out; said in the docs
    n_val = max(1, len(data) // 5)
    labels = samples.labels[-n_val:] if samples.labels is not None else None
    return data[:-n_val], data[-n_val:], labels


def _reference_outputs(
    source: SourceModel, validation: list[Any]
) -> list[tuple[torch.Tensor, ...]]:
    if source.module is not None:
        with torch.inference_mode():
            return [
                tuple(
                    t.detach().float() if t.is_floating_point() else t.detach()
                    for t in source.module(*s)
                )
                for s in validation
            ]
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(source.onnx_path), providers=["CPUExecutionProvider"])
        return [
            tuple(
                torch.from_numpy(o)
                for o in session.run(
                    None, {n: t.numpy() for n, t in zip(source.input_names, s, strict=True)}
                )
            )
            for s in validation
        ]
    except Exception as exc:
        raise InputError(f"the ONNX model raised on the first sample: {exc}") from exc


def _on_result(
    kwargs: Mapping[str, Any], model: Any, payload: TrialPayload, batch: int, options: _Options
) -> Callable[[TrialResult], None]:
    """Progress lines, plus one history row per trial when ``history=`` is given."""
    show = _progress_printer(kwargs.get("progress", True))
    if kwargs.get("history") is None:
        return show
    from speedster_dist.measure import BUILTIN_METRICS
    from speedster_dist.results import open_history

    metric = next((k for k, f in BUILTIN_METRICS.items() if f is options.metric), "custom")
    settings = {
        "metric_drop_ths": options.metric_drop_ths,
        "metric": metric,
        "optimization_time": options.budget.label,
        "ignored_backends": sorted(options.ignored_backends),
        "devices": sorted(d.value for d in options.devices),
    }
    writer = open_history(
        kwargs["history"], model, _study_fingerprint(payload.source), batch, settings
    )

    def record(result: TrialResult) -> None:
        writer.append(result)
        show(result)

    return record


def prepare_payload(
    model: torch.nn.Module | str | Path,
    input_data: Any,
    metric_drop_ths: float | None = None,
    metric: str | MetricFn | None = None,
    tokenizer: Any = None,
    tokenizer_args: Mapping[str, Any] | None = None,
    batch_size: int = 1,
    measure_settings: MeasureSettings | None = None,
) -> tuple[TrialPayload, int]:
    """The trial payload (and batch size) ``optimize_model`` builds for these arguments.

    Used by ``speedster-dist rebench`` to re-measure saved winners exactly as they were
    searched. Raises :class:`InputError` like ``optimize_model``.
    """
    options = _validate_options(metric_drop_ths, metric, "constrained", None, None, None)
    payload, _, batch = _prepare(
        model, input_data, options, None, tokenizer, tokenizer_args, batch_size, measure_settings
    )
    return payload, batch


def _progress_printer(enabled: bool) -> Callable[[TrialResult], None]:
    started = time.monotonic()
    count = [0]

    def show(result: TrialResult) -> None:
        count[0] += 1
        if enabled:
            elapsed = time.monotonic() - started
            print(f"{elapsed:7.1f}s {progress_line(count[0], result)}", file=sys.stderr, flush=True)

    return show


def _cluster_address(cluster: Any) -> str:
    if cluster is None:
        return "auto"
    if not isinstance(cluster, str) or not cluster.strip():
        raise InputError(
            f"cluster must be 'auto' or an address (host:port, ray://host:port), got {cluster!r}"
        )
    return cluster.strip()


def _runtime_env(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if value == "package":
        return package_runtime_env()
    if isinstance(value, Mapping):
        return dict(value)
    raise InputError(f"runtime_env must be None, 'package' or a dict, got {value!r}")


def _learner(outcome: SearchOutcome, io: LearnerIO) -> HardwareKeyedLearner:
    entries = {}
    for key, result in outcome.winners.items():
        base = outcome.baseline(key)
        metrics = {
            "latency_p50_s": result.latency.p50 if result.latency else None,
            "latency_p90_s": result.latency.p90 if result.latency else None,
            "baseline_p50_s": base.latency.p50 if base and base.latency else None,
            "metric_drop": result.metric_drop,
        }
        c = result.candidate
        entries[key] = WinnerEntry(
            outcome.hardware[key],
            c.backend,
            c.precision.value,
            c.technique,
            c.knob_dict,
            metrics,
            outcome.saved[key],
        )
    if not entries:
        reasons = "; ".join(f"{k}: {v}" for k, v in outcome.no_winner.items())
        raise RuntimeError(
            f"no candidate completed on any hardware type ({reasons}).\n"
            + format_trials(outcome.results)
        )
    return HardwareKeyedLearner(
        io, entries, results=list(outcome.results), portable=outcome.portable
    )
