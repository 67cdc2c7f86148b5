"""int8 quantization with ONNX Runtime's quantizer: static Q/DQ (calibrated on held-in
samples) and dynamic. ``onnxruntime`` is imported inside the functions."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speedster_dist.backends._onnx.export import short_error
from speedster_dist.backends._onnx.files import external_files, feeds, graph_input_names, is_large
from speedster_dist.backends._protocol import Knob, SourceModel, UnsupportedCandidate
from speedster_dist.records import DeviceKind, Precision

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_CALIBRATION_SAMPLES",
    "FEW_DISTINCT",
    "calibration_note",
    "distinct_samples",
    "pick_calibration",
    "quantize_dynamic_int8",
    "quantize_static_qdq",
    "quantize_static_with_knobs",
    "static_int8_knobs",
]

logger = logging.getLogger(__name__)

# Static quantization is limited to the ops where int8 pays off. Quantizing everything
# also puts Q/DQ on index arithmetic (T5's relative-position buckets: Log, Div, Mul, then
# Cast to int64), which turns the Gather indices into garbage.
_STATIC_OPS = ["MatMul", "Gemm", "Conv", "ConvTranspose"]
# Fewer distinct held-in samples than this earn int8 a note in the summary. MiniLM, 20 short
# held-out texts (docs/benchmarks.md): calibrated on their own 5 texts, NNCF int8's cosine
# drop was 0.032 (0.018 even with 16 MatMuls in float); on 16 other texts, 0.0065.
FEW_DISTINCT = 16


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
            logger.info("quantization pre-processing %s failed: %s", extra, short_error(exc))
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
        Knob("calibration_samples", (DEFAULT_CALIBRATION_SAMPLES, 0), counts_samples=True, **where),
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


def distinct_samples(samples: Sequence[Sequence[torch.Tensor]]) -> int:
    """How many of ``samples`` differ in content (dtype, shape and values of every tensor):
    the guide's ``[input_dict for _ in range(100)]`` is one sample a hundred times."""
    seen = set()
    for sample in samples:
        digest = hashlib.sha256()
        for tensor in sample:
            if not isinstance(tensor, torch.Tensor):
                digest.update(repr(tensor).encode())
                continue
            array = tensor.detach().cpu().contiguous()
            digest.update(f"{array.dtype}{tuple(array.shape)}".encode())
            digest.update(array.reshape(-1).view(torch.uint8).numpy().tobytes())
        seen.add(digest.digest())
    return len(seen)


def calibration_note(samples: Sequence[Sequence[torch.Tensor]]) -> str | None:
    """What to tell the user when int8 was calibrated on fewer than :data:`FEW_DISTINCT`
    distinct samples (None otherwise): ranges and smoothing fitted to a few inputs."""
    distinct = distinct_samples(samples)
    if distinct >= FEW_DISTINCT:
        return None
    return (
        f"int8 was calibrated on {distinct} distinct sample(s) (of {len(samples)} held in): "
        f"{FEW_DISTINCT} or more distinct, representative samples make int8 more accurate"
    )


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
        for data in external_files(prepared) if prepared.exists() else []:
            data.unlink(missing_ok=True)
        prepared.unlink(missing_ok=True)


# --------------------------------------------------------------------------- graph rewrites
