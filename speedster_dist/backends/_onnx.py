"""ONNX helpers shared by the ONNX Runtime, OpenVINO and TensorRT backends.

Export (cached per node), input feeds, int8 quantization (static QDQ and dynamic) and the
ONNX Runtime transformer optimizer. ``onnx`` and ``onnxruntime`` are imported inside the
functions so that importing this module never needs them.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import re
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speedster_dist.backends._protocol import Knob, SourceModel, UnsupportedCandidate
from speedster_dist.cache import cache_root
from speedster_dist.records import DeviceKind, Precision

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_CALIBRATION_SAMPLES",
    "convert_float16",
    "copy_onnx",
    "export_onnx",
    "feeds",
    "graph_input_names",
    "is_large",
    "optimize_transformer",
    "pick_calibration",
    "quantize_dynamic_int8",
    "quantize_static_qdq",
    "quantize_static_with_knobs",
    "static_int8_knobs",
]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
# A protobuf cannot exceed 2 GiB; keep a margin for the graph itself.
EXTERNAL_DATA_BYTES = 1_800_000_000
_ERROR_CHARS = 300
# Static quantization is limited to the ops where int8 pays off. Quantizing everything
# also puts Q/DQ on index arithmetic (T5's relative-position buckets: Log, Div, Mul, then
# Cast to int64), which turns the Gather indices into garbage.
_STATIC_OPS = ["MatMul", "Gemm", "Conv", "ConvTranspose"]

# Hugging Face ``model_type`` -> model type of the ONNX Runtime transformer optimizer.
_OPTIMIZER_TYPES: dict[str, str] = {
    "bert": "bert",
    "albert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "camembert": "bert",
    "distilbert": "bert",
    "electra": "bert",
    "gpt2": "gpt2",
    "t5": "t5",
    "bart": "bart",
    "vit": "vit",
}


# --------------------------------------------------------------------------- export


def export_onnx(model: SourceModel, workdir: Path, opset: int = 17) -> Path:
    """The model as an ONNX file: the user's file, a cached export, or a fresh one.

    Exports are cached under ``cache_root()/onnx/<fingerprint>-<io>-opset<N>/`` because
    several trials on one node need the same file (``<io>`` hashes the example inputs'
    static shapes and dtypes, which the weights fingerprint does not cover but an export
    bakes in); a folder is written whole and then renamed,
    so concurrent processes never see half a file (two may export at once; one wins).
    Without a fingerprint the export goes to ``workdir`` and is not cached.
    Raises :class:`UnsupportedCandidate` when no exporter can handle the model.
    """
    if model.onnx_path is not None:
        return Path(model.onnx_path)
    if model.module is None:
        raise UnsupportedCandidate("the source model has neither a torch module nor an ONNX file")
    if not model.fingerprint:
        target = Path(workdir) / "export" / MODEL_FILE
        _export_into(model, target, opset)
        return target
    final = cache_root() / "onnx" / f"{model.fingerprint}-{_io_key(model)}-opset{opset}"
    if (final / MODEL_FILE).exists():
        return final / MODEL_FILE
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    except OSError as exc:  # read-only home, full disk...: export without caching
        logger.warning("ONNX cache %s unusable (%s); exporting into the workdir", final, exc)
        return export_onnx(_without_fingerprint(model), workdir, opset)
    try:
        _export_into(model, staging / MODEL_FILE, opset)
        _publish(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final / MODEL_FILE


def _io_key(model: SourceModel) -> str:
    """Hash of what an export fixes besides the weights: names, dtypes, static dims."""
    shapes = [
        (
            str(t.dtype),
            [
                -1 if axis in model.dynamic_axes.get(name, {}) else size
                for axis, size in enumerate(t.shape)
            ],
        )
        for name, t in zip(model.input_names, model.example_inputs, strict=True)
    ]
    text = repr((model.input_names, model.output_names, shapes, sorted(model.dynamic_axes)))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _without_fingerprint(model: SourceModel) -> SourceModel:
    from dataclasses import replace

    return replace(model, fingerprint="")


def _publish(staging: Path, final: Path) -> None:
    # rename() of a folder is atomic; it fails when another process published first.
    try:
        staging.rename(final)
    except OSError:
        if not (final / MODEL_FILE).exists():
            raise


def _export_into(model: SourceModel, path: Path, opset: int) -> None:
    """Export ``model.module`` to ``path``: legacy exporter first, then torch.export."""
    module = model.module
    assert module is not None  # checked by export_onnx
    path.parent.mkdir(parents=True, exist_ok=True)
    large = _parameter_bytes(module) > EXTERNAL_DATA_BYTES
    errors: list[str] = []
    with (
        _eager_attention(module),
        _training_flags_kept(module),
        torch.no_grad(),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # tracer warnings are expected and not actionable
        for name, exporter in (("legacy", _export_legacy), ("dynamo", _export_dynamo)):
            try:
                exporter(module, model, path, opset, large)
            except Exception as exc:
                errors.append(f"{name} exporter: {_short(exc)}")
                _clear_folder(path.parent)
                continue
            _store_large_externally(path, large)
            return
    raise UnsupportedCandidate("ONNX export failed; " + " | ".join(errors))


def _export_legacy(
    module: torch.nn.Module, model: SourceModel, path: Path, opset: int, large: bool
) -> None:
    # The TorchScript-based exporter: ~3x faster than dynamo here, and its graphs are the
    # ones the ORT transformer optimizer knows how to fuse.
    torch.onnx.export(
        module,
        tuple(model.example_inputs),
        str(path),
        input_names=list(model.input_names),
        output_names=list(model.output_names),
        dynamic_axes=model.dynamic_axes or None,
        opset_version=opset,
        do_constant_folding=True,
        dynamo=False,
    )


def _export_dynamo(
    module: torch.nn.Module, model: SourceModel, path: Path, opset: int, large: bool
) -> None:
    torch.onnx.export(
        module,
        tuple(model.example_inputs),
        str(path),
        input_names=list(model.input_names),
        output_names=list(model.output_names),
        dynamic_shapes=_dynamic_shapes(module, model),
        opset_version=opset,
        dynamo=True,
        external_data=large,
        verbose=False,
    )


def _dynamic_shapes(module: torch.nn.Module, model: SourceModel) -> tuple[Any, ...] | None:
    """torch.export's ``dynamic_shapes`` for the positional inputs, from ``dynamic_axes``."""
    if not model.dynamic_axes:
        return None
    # DYNAMIC (not named Dims): inputs whose axes are equal at trace time (input_ids and
    # attention_mask) would otherwise have to be declared equal by hand.
    specs = tuple(
        {axis: torch.export.Dim.DYNAMIC for axis in model.dynamic_axes.get(name, {})} or None
        for name in model.input_names
    )
    params = inspect.signature(module.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return (specs,)  # forward(*tensors) is one argument to torch.export
    return specs


@contextlib.contextmanager
def _eager_attention(module: torch.nn.Module) -> Iterator[None]:
    """Export Hugging Face models with eager attention, restoring the user's setting after.

    Eager attention exports as MatMul/Softmax patterns that the ORT transformer optimizer
    fuses (Attention, SkipLayerNorm...); sdpa does not (MiniLM: 25 ms fused vs 30 ms).
    """
    saved = [(config, config._attn_implementation_internal) for config in _hf_configs(module)]
    try:
        if saved:
            _switch_to_eager(module)
        yield
    finally:
        for config, value in saved:
            config._attn_implementation_internal = value


@contextlib.contextmanager
def _training_flags_kept(module: torch.nn.Module) -> Iterator[None]:
    """Restore every submodule's train/eval flag after export.

    The legacy exporter puts the module in eval mode and then calls ``train(mode)`` on the
    root with the root's old flag: an eval model under a root left in training mode (a
    wrapper built after ``model.eval()``) would come back with dropout switched on.
    """
    flags = [(sub, sub.training) for sub in module.modules()]
    try:
        yield
    finally:
        for sub, training in flags:
            sub.training = training


def _hf_configs(module: torch.nn.Module) -> list[Any]:
    """Every Hugging Face config (sub-configs included) reachable from ``module``."""
    found: dict[int, Any] = {}
    pending = [getattr(sub, "config", None) for sub in module.modules()]
    while pending:
        config = pending.pop()
        if config is None or id(config) in found:
            continue
        if hasattr(config, "_attn_implementation_internal"):
            found[id(config)] = config
            pending.extend(getattr(config, key, None) for key in getattr(config, "sub_configs", {}))
    return list(found.values())


def _switch_to_eager(module: torch.nn.Module) -> None:
    for sub in module.modules():
        config = getattr(sub, "config", None)
        if getattr(config, "_attn_implementation", "eager") == "eager":
            continue
        try:
            setter = getattr(sub, "set_attn_implementation", None)
            if callable(setter):
                setter("eager")
            else:  # older transformers: the config property dispatches to sub-configs
                config._attn_implementation = "eager"  # type: ignore[union-attr]
        except Exception as exc:  # exporting with the model's own attention still works
            logger.info("could not switch %s to eager attention: %s", type(sub).__name__, exc)


def _parameter_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def _store_large_externally(path: Path, large: bool) -> None:
    """Give a large export one ``model.onnx.data`` file next to it (or none when small).

    The legacy exporter writes one file per tensor for models over 2 GiB; one data file
    is what :func:`copy_onnx` and every consumer expect.
    """
    if not (large or _has_external_data(path)):
        return
    import onnx

    proto = onnx.load(str(path))  # pulls every external tensor into memory
    _clear_folder(path.parent)
    onnx.save_model(
        proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
    )


def _clear_folder(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _short(exc: BaseException) -> str:
    """The innermost cause of ``exc`` in one line (exporter errors are pages long)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    message = f"{type(exc).__name__}: {first}"
    return message if len(message) <= _ERROR_CHARS else message[: _ERROR_CHARS - 3] + "..."


# --------------------------------------------------------------------------- files


def _external_files(path: Path) -> list[Path]:
    import onnx
    from onnx.external_data_helper import ExternalDataInfo

    proto = onnx.load(str(path), load_external_data=False)
    locations = {
        ExternalDataInfo(tensor).location
        for tensor in proto.graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
    }
    return [path.parent / location for location in sorted(locations)]


def _has_external_data(path: Path) -> bool:
    return bool(_external_files(path))


def is_large(path: Path) -> bool:
    """Whether the model (with its external data) is too big for one protobuf."""
    files = [path, *_external_files(path)]
    return sum(f.stat().st_size for f in files if f.exists()) > EXTERNAL_DATA_BYTES


def copy_onnx(source: Path, target: Path) -> Path:
    """Copy an ONNX file and its external data files (kept next to it, same names)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    for data in _external_files(source):
        shutil.copyfile(data, target.parent / data.relative_to(source.parent))
    return target


def graph_input_names(path: Path) -> list[str]:
    """Names of the graph's real inputs (exporters drop unused ones, e.g. token_type_ids)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {tensor.name for tensor in graph.initializer}
    return [value.name for value in graph.input if value.name not in initializers]


# --------------------------------------------------------------------------- feeds


def feeds(
    model_input_names: Sequence[str],
    tensors: Sequence[torch.Tensor],
    keep: Collection[str] | None = None,
) -> dict[str, np.ndarray]:
    """ONNX Runtime feeds from positional tensors; only names in ``keep`` when given.

    Contiguous CPU tensors are shared with numpy, not copied; integer dtypes are kept
    (token ids stay int64). bfloat16 becomes float32 because numpy has no bfloat16.
    """
    if len(model_input_names) != len(tensors):
        raise ValueError(f"expected {len(model_input_names)} inputs, got {len(tensors)}")
    return {
        name: _to_numpy(tensor)
        for name, tensor in zip(model_input_names, tensors, strict=True)
        if keep is None or name in keep
    }


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    if tensor.dtype is torch.bfloat16:
        tensor = tensor.float()
    return np.ascontiguousarray(tensor.numpy())


# --------------------------------------------------------------------------- quantization


class _SampleReader:
    """CalibrationDataReader over held-in samples (shapes may differ between samples)."""

    def __init__(
        self, names: Sequence[str], samples: Sequence[Sequence[torch.Tensor]], keep: Collection[str]
    ) -> None:
        self._names = tuple(names)
        self._samples = list(samples)
        self._keep = keep
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._samples):
            return None
        sample = self._samples[self._next]
        self._next += 1
        return feeds(self._names, sample, self._keep)

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.get_next, None)


def _preprocess(onnx_path: Path, out_path: Path) -> Path:
    """Shape inference + basic graph cleanup before quantization; ``onnx_path`` if it fails.

    Symbolic shape inference types the outputs of com.microsoft ops (fused Attention...)
    that dynamic quantization otherwise cannot handle. ``auto_merge`` lets it unify the
    per-input sequence-length symbols of our exports.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    external = is_large(onnx_path)
    for extra in ({"auto_merge": True}, {"skip_symbolic_shape": True}):
        try:
            quant_pre_process(
                str(onnx_path),
                str(out_path),
                save_as_external_data=external,
                all_tensors_to_one_file=True,
                **extra,
            )
            return out_path
        except Exception as exc:
            logger.info("quantization pre-processing %s failed: %s", extra, _short(exc))
    return onnx_path


# How activation ranges are calibrated: min/max (fast, the default), or from histograms
# (slower, and they need every calibration output in memory), which clip outliers.
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
# Static int8 calibrates on at most this many held-in samples by default (a bounded build
# time whatever the user passes); an unconstrained search also tries all of them.
DEFAULT_CALIBRATION_SAMPLES = 32


def static_int8_knobs(devices: frozenset[DeviceKind]) -> tuple[Knob, ...]:
    """The calibration knobs of a backend's static int8 (QDQ) capability on ``devices``.

    ``calibration_samples`` 0 means every held-in sample.
    """
    where: dict[str, Any] = {
        "devices": devices,
        "precisions": frozenset({Precision.INT8}),
        "techniques": frozenset({"static"}),
    }
    return (
        Knob("calibration_samples", (DEFAULT_CALIBRATION_SAMPLES, 0), **where),
        Knob("calibration_method", CALIBRATION_METHODS, **where),
    )


def pick_calibration(samples: Sequence[Any], count: int) -> list[Any]:
    """``count`` of ``samples``, spread evenly over them (all when ``count`` is 0 or more
    than there are): the held-in data may be ordered, by length or by class."""
    chosen = list(samples)
    if count <= 0 or count >= len(chosen):
        return chosen
    step = len(chosen) / count
    return [chosen[int(i * step)] for i in range(count)]


def quantize_static_with_knobs(
    onnx_path: Path,
    model: SourceModel,
    calibration: Sequence[tuple[torch.Tensor, ...]],
    knobs: Mapping[str, Any],
    out_path: Path,
    *,
    symmetric: bool = False,
) -> Path:
    """:func:`quantize_static_qdq` as a candidate's knobs (:func:`static_int8_knobs` and
    ``per_channel``) say; without held-in samples the example input gives the ranges."""
    count = int(knobs.get("calibration_samples", DEFAULT_CALIBRATION_SAMPLES))
    samples = pick_calibration(calibration, count) or [tuple(model.example_inputs)]
    return quantize_static_qdq(
        onnx_path,
        model.input_names,
        samples,
        out_path,
        bool(knobs.get("per_channel", False)),
        method=str(knobs.get("calibration_method", CALIBRATION_METHODS[0])),
        symmetric=symmetric,
    )


def quantize_static_qdq(
    onnx_path: Path,
    input_names: Sequence[str],
    calibration: Sequence[tuple[torch.Tensor, ...]],
    out_path: Path,
    per_channel: bool = False,
    *,
    method: str = "minmax",
    symmetric: bool = False,
) -> Path:
    """Static int8 quantization in QDQ form (runs on ONNX Runtime, OpenVINO, TensorRT).

    ``calibration`` holds positional samples named by ``input_names``; they may differ in
    shape (dynamic axes). Only MatMul/Gemm/Conv are quantized. ``method`` is one of
    :data:`CALIBRATION_METHODS`. ``symmetric``: int8 activations and weights with zero
    points of 0 (what TensorRT accepts); otherwise uint8 activations. Raises
    :class:`UnsupportedCandidate` without samples or for an unknown method.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise UnsupportedCandidate("static int8 quantization needs calibration samples")
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise UnsupportedCandidate(
            f"unknown calibration method {method!r}; use one of {', '.join(methods)}"
        )
    shapes = {tuple(tuple(t.shape) for t in sample) for sample in calibration}
    if method != "minmax" and len(shapes) > 1:
        # ONNX Runtime's histogram collectors stack every sample's outputs into one array.
        raise UnsupportedCandidate(
            f"calibration method {method!r} needs held-in samples of one shape; these have "
            f"{len(shapes)} different shapes (minmax calibrates on any)"
        )
    # uint8 activations, int8 weights: x86's native int8 kernels (and OpenVINO's layout).
    # MiniLM on AVX2: 2x faster than int8/int8, same outputs.
    activations = QuantType.QInt8 if symmetric else QuantType.QUInt8
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True} if symmetric else {}
    prepared = _preprocess(Path(onnx_path), out_path.with_suffix(".pre.onnx"))
    reader = _SampleReader(input_names, calibration, set(graph_input_names(prepared)))
    try:
        quantize_static(
            str(prepared),
            str(out_path),
            reader,  # duck-typed: CalibrationDataReader checks for get_next()
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=activations,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=_STATIC_OPS,
            use_external_data_format=is_large(prepared),
            calibrate_method=methods[method],
            extra_options=extra,
        )
    finally:
        _remove_intermediate(prepared, onnx_path)
    return out_path


def quantize_dynamic_int8(onnx_path: Path, out_path: Path, per_channel: bool = False) -> Path:
    """Dynamic int8 quantization: int8 weights, activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    prepared = _preprocess(Path(onnx_path), out_path.with_suffix(".pre.onnx"))
    try:
        quantize_dynamic(
            str(prepared),
            str(out_path),
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            use_external_data_format=is_large(prepared),
        )
    finally:
        _remove_intermediate(prepared, onnx_path)
    return out_path


def _remove_intermediate(prepared: Path, original: Path) -> None:
    if prepared != Path(original):
        for data in _external_files(prepared) if prepared.exists() else []:
            data.unlink(missing_ok=True)
        prepared.unlink(missing_ok=True)


# --------------------------------------------------------------------------- graph rewrites


def optimize_transformer(
    onnx_path: Path,
    out_path: Path,
    hf_config: Mapping[str, Any] | None,
    *,
    use_gpu: bool = False,
) -> Path | None:
    """Fuse transformer blocks (Attention, SkipLayerNorm, BiasGelu...) with the ORT optimizer.

    Returns the optimized file, or None when not applicable: no or unknown ``model_type``,
    nothing fused, or the optimizer failed on this graph (logged). The result contains
    com.microsoft ops, so only ONNX Runtime can run it; ``use_gpu`` picks GPU fusions.
    A CPU result is checked by loading it: some fused graphs (static-shape BERT exports)
    make ONNX Runtime's own constant folding fail at session creation. The fused form of a
    cached export is cached beside it (the fusion takes seconds, and every fused trial on
    the node needs the same file): then the cached file is returned, not ``out_path``.
    """
    model_type = _OPTIMIZER_TYPES.get(str((hf_config or {}).get("model_type", "")))
    if hf_config is None or model_type is None:
        return None
    cached = _fused_cache_path(Path(onnx_path), use_gpu)
    if cached is not None and cached.exists():
        return cached
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        optimized = optimize_model(
            str(onnx_path),
            model_type=model_type,
            num_heads=_first_int(hf_config, "num_attention_heads", "n_head", "num_heads"),
            hidden_size=_first_int(hf_config, "hidden_size", "n_embd", "d_model"),
            # Python fusions only: the session applies ORT's graph optimizations at load
            # anyway, and the optimizer's own ORT pre-pass (level 1) is slower, fuses no
            # more, and on static-shape BERT exports it blocks the Attention fusion.
            opt_level=0,
            use_gpu=use_gpu,
        )
        fused = sum((optimized.get_fused_operator_statistics() or {}).values())
        if not fused:
            return None
        optimized.save_model_to_file(str(out_path), use_external_data_format=is_large(onnx_path))
        if not use_gpu:
            _check_loads(out_path)
    except Exception as exc:
        logger.warning("ORT transformer optimizer failed (%s); using the plain graph", _short(exc))
        return None
    if cached is not None:
        _publish_file(out_path, cached)
    return out_path


def _fused_cache_path(onnx_path: Path, use_gpu: bool) -> Path | None:
    """Where the fused form of a cached export (this module's, or a search's shared one) is
    kept; None for a file outside the node cache (a user's file, an uncached export) or one
    with external data."""
    import onnxruntime

    try:
        cached_export = cache_root().resolve() in onnx_path.resolve().parents
    except OSError:
        return None
    if not cached_export or is_large(onnx_path):
        return None
    device = "gpu" if use_gpu else "cpu"
    return onnx_path.parent / f"fused-{device}-ort{onnxruntime.__version__}.onnx"


def _publish_file(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` atomically (a reader sees all of it or nothing)."""
    staging = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        shutil.copyfile(source, staging)
        os.replace(staging, target)
    except OSError as exc:  # a read-only or full cache only costs the next trial a fusion
        logger.info("could not cache the fused graph at %s: %s", target, exc)
        staging.unlink(missing_ok=True)


def _check_loads(path: Path) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # the failure is reported by our warning, not ORT's log
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _first_int(config: Mapping[str, Any], *keys: str) -> int:
    # 0 asks the optimizer to detect the value from the graph.
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return 0


def convert_float16(onnx_path: Path, out_path: Path) -> Path:
    """Float16 weights and arithmetic, float32 inputs and outputs (callers pass float32)."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(onnx_path)))
    try:
        model.convert_float_to_float16(keep_io_types=True)
    except Exception:  # symbolic shape inference can fail on exports with unmerged dims
        model = OnnxModel(onnx.load(str(onnx_path)))
        model.convert_float_to_float16(use_symbolic_shape_infer=False, keep_io_types=True)
    model.save_model_to_file(str(out_path), use_external_data_format=is_large(onnx_path))
    return out_path
