"""The user's model and samples, turned into what every trial needs: the trial payload.

A torch model becomes the flat source module (dynamic axes derived from the samples or taken
from ``dynamic_info``); an ``.onnx`` path is read as it is. Samples are split 80/20 into
held-in (calibration) and held-out (validation) samples, and the original model's outputs on
the held-out ones become the reference every candidate is judged against. Everything that
can be wrong with the user's model or data fails here, before any trial, as
:class:`InputError`.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from speedster_dist.artifacts import LearnerIO, sha256_file
from speedster_dist.backends import (
    BuildConfig,
    SourceModel,
    UnsupportedCandidate,
    get_backend,
    source_for_batch,
)
from speedster_dist.errors import BatchError, InputError
from speedster_dist.inputs import SampleSet, few_samples, normalize_inputs, split_sizes
from speedster_dist.measure import resolve_metric, tile_batch
from speedster_dist.modelio import FlatModule, OutputSpec, derive_dynamic_axes, make_source_model
from speedster_dist.options import RunOptions, parse_run_options
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.runtime import FP32_TOLERANCE, TrialPayload
from speedster_dist.sentence import (
    SentenceEncoder,
    is_sentence_transformer,
    split_sentence_transformer,
)
from speedster_dist.serving import Objective

__all__ = ["Prepared", "eval_model", "prepare", "prepare_payload"]

Sample = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Prepared:
    """The payload of every trial, how the learner is called, and the samples' batch size;
    for a sentence-transformer, what turns its token embeddings into sentence embeddings."""

    payload: TrialPayload
    io: LearnerIO
    batch: int
    encoder: SentenceEncoder | None = None


def prepare(
    model: torch.nn.Module | str | Path,
    input_data: Any,
    options: RunOptions,
    dynamic_info: Mapping[str, Any] | None = None,
    tokenizer: Any = None,
    tokenizer_args: Mapping[str, Any] | None = None,
) -> Prepared:
    """Validate and prepare ``model`` and ``input_data``; raises :class:`InputError`.

    A ``SentenceTransformer``'s transformer is what is optimized (texts are tokenized with
    its tokenizer unless ``tokenizer`` is given); see :mod:`speedster_dist.sentence`."""
    encoder = None
    if is_sentence_transformer(model):
        model, encoder = split_sentence_transformer(model)
        tokenizer = tokenizer if tokenizer is not None else encoder.tokenizer
    if isinstance(model, str | Path):
        source, samples, io = _onnx_source(Path(model), input_data, dynamic_info)
    elif isinstance(model, torch.nn.Module):
        samples = normalize_inputs(input_data, model, tokenizer, tokenizer_args, options.batch_size)
        source, io = _torch_source(model, samples, dynamic_info)
    else:
        raise InputError(
            "model must be a torch.nn.Module, a SentenceTransformer, a Hugging Face model id "
            f"or folder, or a path to an .onnx file, got {type(model).__name__}"
        )
    if options.metric is resolve_metric("accuracy") and samples.labels is None:
        raise InputError(
            'metric="accuracy" needs labels: pass samples as ((inputs...), label) tuples'
        )
    warning = few_samples(len(samples.samples))
    if warning is not None:
        warnings.warn(
            f"input_data has {warning}. Give at least 5 representative samples (Speedster "
            "asks for them too); the search runs, but its accuracy guard is weak.",
            UserWarning,
            stacklevel=3,
        )
    calibration, validation, labels = _split(samples)
    reference = _reference_outputs(source, validation)
    first_held_out = len(samples.samples) - len(validation)
    _require_finite(reference, first_index=first_held_out)
    _require_deterministic(source, validation[0], reference[0], first_held_out)
    payload = TrialPayload(
        source=source,
        calibration=calibration,
        validation=validation,
        reference_outputs=reference,
        labels=labels,
        metric=options.metric,
        metric_drop_ths=options.metric_drop_ths,
        measure=options.measure,
        objective=options.serving_objective,
    )
    _check_batches(source, validation, payload.objective)
    first = samples.samples[0][0]
    return Prepared(payload, io, int(first.shape[0]) if first.dim() else 1, encoder)


def _check_batches(source: SourceModel, validation: list[Sample], objective: Objective) -> None:
    """Every batch a throughput or cost search measures can be built from the held-out
    samples (they agree beyond the batch axis) and taken by the model (a user's ONNX file
    that fixes its batch axis cannot be rebuilt for another batch)."""
    for size in objective.batch_sizes:
        try:
            source_for_batch(source, tile_batch(validation, source.input_names, size))
        except (BatchError, UnsupportedCandidate) as exc:
            raise InputError(f"batch_sizes: a batch of {size} requests: {exc}") from None


def prepare_payload(
    model: torch.nn.Module | str | Path,
    input_data: Any,
    settings: Mapping[str, Any],
    tokenizer: Any = None,
    tokenizer_args: Mapping[str, Any] | None = None,
    extras: Mapping[str, Any] | None = None,
) -> tuple[TrialPayload, RunOptions, int]:
    """The payload, options and batch size ``optimize_model`` builds for recorded
    ``settings`` (a rebench kit's): used to re-measure saved winners as they were searched."""
    options = parse_run_options(
        metric_drop_ths=settings.get("metric_drop_ths"),
        metric=settings.get("metric"),
        optimization_time=settings.get("optimization_time", "constrained"),
        ignore_compilers=settings.get("ignore_compilers"),
        ignore_compressors=settings.get("ignore_compressors"),
        device=settings.get("device"),
        extras=extras,
    )
    prepared = prepare(model, input_data, options, None, tokenizer, tokenizer_args)
    return prepared.payload, options, prepared.batch


def _axes(
    names: Sequence[str], specs: Any, what: str, valid_ranks: Sequence[int] | None = None
) -> dict[str, dict[int, str]]:
    """``dynamic_info``'s list of ``{axis: name}`` (one per input or output), validated."""
    if specs is None:
        return {}
    if isinstance(specs, str | Mapping) or not isinstance(specs, Sequence):
        raise InputError(f'dynamic_info["{what}"] must be a list of {{axis: name}} dicts')
    if len(specs) > len(names):
        raise InputError(
            f'dynamic_info["{what}"] describes {len(specs)} {what}; the model has '
            f"{len(names)}: {list(names)}"
        )
    axes: dict[str, dict[int, str]] = {}
    for index, (name, spec) in enumerate(zip(names, specs, strict=False)):
        if not isinstance(spec, Mapping):
            raise InputError(f'dynamic_info["{what}"][{index}] must be a dict {{axis: name}}')
        parsed = {}
        for axis, tag in spec.items():
            rank = valid_ranks[index] if valid_ranks else None
            if isinstance(axis, bool) or not isinstance(axis, int) or axis < 0:
                raise InputError(
                    f'dynamic_info["{what}"][{index}]: axis {axis!r} is not an integer >= 0'
                )
            if rank is not None and axis >= rank:
                raise InputError(
                    f'dynamic_info["{what}"][{index}]: axis {axis} does not exist in '
                    f"{name!r}, which has {rank} axes"
                )
            parsed[axis] = tag if isinstance(tag, str) else f"{name}_dim{axis}"
        if parsed:
            axes[name] = parsed
    return axes


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
    ranks = [t.dim() for t in samples.samples[0]]
    axes = _axes(samples.input_names, dynamic_info["inputs"], "inputs", ranks)
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
        source.dynamic_axes.update(_axes(spec.names, dynamic_info["outputs"], "outputs"))
    output_class = _live_output_class(model, samples)
    shapes = _built_shapes(source)
    return source, LearnerIO(samples.input_names, samples.keyword, spec, output_class, shapes)


def _built_shapes(source: SourceModel) -> tuple[tuple[int | None, ...], ...]:
    """Each input's shape as the learner takes it: the example's, None on dynamic axes."""
    return tuple(
        tuple(
            None if axis in source.dynamic_axes.get(name, {}) else int(size)
            for axis, size in enumerate(tensor.shape)
        )
        for name, tensor in zip(source.input_names, source.example_inputs, strict=True)
    )


def _live_output_class(model: torch.nn.Module, samples: SampleSet) -> type | None:
    # The exact class the user's model returns (possibly their own ModelOutput subclass):
    # used in this process; a loaded artifact re-resolves it from transformers only.
    with torch.inference_mode():
        out = FlatModule(model, samples.input_names, samples.keyword).call_original(
            *samples.samples[0]
        )
    return type(out) if not isinstance(out, torch.Tensor | tuple | list | dict) else None


def _onnx_graph_io(path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if path.suffix != ".onnx" or not path.is_file():
        raise InputError(f"model path {path} is not an existing .onnx file")
    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:
        raise InputError(f"cannot read ONNX model {path}: {exc}") from exc
    initializers = {i.name for i in graph.initializer}
    names = tuple(i.name for i in graph.input if i.name not in initializers)
    return names, tuple(o.name for o in graph.output)


def _onnx_source(
    path: Path, input_data: Any, dynamic_info: Mapping[str, Any] | None
) -> tuple[SourceModel, SampleSet, LearnerIO]:
    names, outputs = _onnx_graph_io(path)
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
    # The file's bytes identify the model (studies, history); it is never exported again.
    fingerprint = sha256_file(path)[:16]
    source = SourceModel(names, outputs, samples.samples[0], None, path, axes, fingerprint)
    spec = OutputSpec("tensor" if len(outputs) == 1 else "tuple", outputs)
    shapes = _onnx_shapes(path, _built_shapes(source))
    return source, samples, LearnerIO(names, False, spec, input_shapes=shapes)


def _onnx_shapes(
    path: Path, built: tuple[tuple[int | None, ...], ...]
) -> tuple[tuple[int | None, ...], ...]:
    """``built`` with the graph's own symbolic dims as dynamic too: a user's ONNX file that
    takes any batch keeps taking it, whatever shape the samples had."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    ports = [i for i in graph.input if i.name not in initializers]
    shapes = []
    for port, shape in zip(ports, built, strict=True):
        dims = port.type.tensor_type.shape.dim
        symbolic = {axis for axis, d in enumerate(dims) if not d.HasField("dim_value")}
        shapes.append(tuple(None if axis in symbolic else s for axis, s in enumerate(shape)))
    return tuple(shapes)


def _split(samples: SampleSet) -> tuple[list[Any], list[Any], list[Any] | None]:
    """Speedster's 80/20 split into calibration and held-out validation samples."""
    data = samples.samples
    if len(data) == 1:
        return data, data, samples.labels  # nothing to hold out; said in the docs
    _, n_val = split_sizes(len(data))
    labels = samples.labels[-n_val:] if samples.labels is not None else None
    return data[:-n_val], data[-n_val:], labels


def _reference_outputs(source: SourceModel, validation: list[Sample]) -> list[Sample]:
    """The original model's outputs on the held-out samples (floats as float32)."""
    if source.module is not None:
        with torch.inference_mode():
            return [
                tuple(
                    t.detach().float() if t.is_floating_point() else t.detach()
                    for t in source.module(*s)
                )
                for s in validation
            ]
    # An ONNX file is run the way its fp32 candidate is, minus the fusions.
    config = BuildConfig(Precision.FP32, DeviceKind.CPU, knobs={"graph_fusion": False})
    with tempfile.TemporaryDirectory(prefix="speedster-reference-") as workdir:
        try:
            compiled = get_backend("onnxruntime").build(source, [], config, Path(workdir))
            return [tuple(compiled(*s)) for s in validation]
        except Exception as exc:
            raise InputError(f"the ONNX model raised on the first sample: {exc}") from exc


def _require_finite(reference: list[Sample], first_index: int) -> None:
    """Refuse a model whose own outputs hold NaN or infinity: no candidate could be judged."""
    for offset, outputs in enumerate(reference):
        for position, tensor in enumerate(outputs):
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise InputError(
                    f"the original model's output {position} on sample {first_index + offset} "
                    "holds NaN or infinity: the accuracy of a candidate cannot be judged "
                    "against it. Check that sample (and the model's numerics) first."
                )


def _require_deterministic(
    source: SourceModel, sample: Sample, reference: Sample, index: int
) -> None:
    """Refuse a torch model whose outputs change between two identical calls in eval mode
    (random ops: ``torch.rand``, dropout called with ``training=True``): every candidate
    would be judged against one draw of them. The second call must match the first as
    closely as a full-precision candidate must match the original."""
    if source.module is None:  # an ONNX file: run as it is, by ONNX Runtime
        return
    with torch.inference_mode():
        again = source.module(*sample)
    for position, (first, second) in enumerate(zip(reference, again, strict=True)):
        if _largest_difference(first, second.detach()) > FP32_TOLERANCE:
            raise InputError(
                f"the model is not deterministic: called twice in eval mode on sample {index}, "
                f"its output {position} differed. Every candidate is judged against the "
                "original's outputs, so they must not change from call to call: remove the "
                "random operations from forward() (torch.rand*, dropout with training=True) "
                "or fix them with a seed inside forward()"
            )


def _largest_difference(first: torch.Tensor, second: torch.Tensor) -> float:
    """The largest difference between two outputs, relative to the first's largest value
    (so that an element that cancels to about zero, summed in another order by another
    thread, is not taken for noise); inf when their shapes or, for integer outputs, any
    value differ."""
    if first.shape != second.shape:
        return float("inf")
    if not first.is_floating_point():
        return 0.0 if torch.equal(first, second) else float("inf")
    a, b = first.double(), second.double()
    if a.numel() == 0:
        return 0.0
    return float((a - b).abs().max() / (a.abs().max() + 1e-12))


def eval_model(model: Any) -> Any:
    """The module the search works on: ``model`` itself when every submodule is in eval
    mode already, else an eval-mode deep copy, so that the caller's module keeps its
    training flags (the learner reproduces the model in eval mode, as Speedster's does).
    Anything but a torch module (a path, a name) is returned as it is."""
    if not isinstance(model, torch.nn.Module):
        return model
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if not training:
        return model
    try:
        copied = copy.deepcopy(model)
    except Exception as exc:
        raise InputError(
            f"the model is in training mode ({', '.join(training[:3])}...) and could not be "
            f"copied to search it in eval mode ({type(exc).__name__}: {exc}); call "
            "model.eval() before optimize_model"
        ) from exc
    return copied.eval()
