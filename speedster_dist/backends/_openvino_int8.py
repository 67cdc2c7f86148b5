"""Accuracy-aware int8 for OpenVINO on the CPU: NNCF post-training quantization.

The ``nncf`` technique quantizes the OpenVINO model with NNCF (OpenVINO's own quantization
library) for transformers: symmetric int8 activations and per-channel weights (the
``PERFORMANCE`` preset), SmoothQuant on the MatMuls with the ``smooth_quant_alpha`` knob
(-1: off), and the ``fp_layers`` most sensitive MatMuls kept in float (a rejected candidate is
tried again with more: the knob's back-off, see ``speedster_dist.search``). Sensitivity is
measured on the calibration samples only (the held-out samples never reach a build): each
quantized MatMul in turn gets its float input back, and the ones whose float input brings
the outputs closest to the float model's (in cosine) are the most sensitive. Where the CPU
has bf16 the float part runs in bf16 (mixed int8 + bf16). ``nncf`` (the ``int8`` extra) is
imported lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from speedster_dist.backends._onnx import feeds, pick_calibration
from speedster_dist.backends._protocol import Knob, SourceModel, Tensors, UnsupportedCandidate
from speedster_dist.records import DeviceKind, Precision

__all__ = [
    "NNCF_TECHNIQUE",
    "SENSITIVITY_SAMPLES",
    "nncf_knobs",
    "quantize_nncf",
    "rank_sensitive_matmuls",
]

logger = logging.getLogger(__name__)

NNCF_TECHNIQUE = "nncf"
# Calibration samples for the statistics, and the (fewer) ones that rank sensitivity.
CALIBRATION_SAMPLES = 32
SENSITIVITY_SAMPLES = 8
# Measured on MiniLM-L6 (docs/benchmarks.md): alpha 0.75 was the most accurate; NNCF's own
# default for transformers is 0.95; 0.5 smooths more.
_ALPHAS = (0.75, -1.0, 0.5, 0.95)
_FP_LAYERS = (1, 0, 2, 4)
# A candidate rejected for its metric drop is tried again with the next count of float
# MatMuls (the search's accuracy back-off), while each step helps enough.
_FP_LAYERS_BACKOFF = (0, 1, 2, 4, 8, 16, 32)

Feed = dict[str, np.ndarray]
Runner = Callable[[Any, Sequence[Feed]], list[list[np.ndarray]]]


def nncf_knobs(devices: frozenset[DeviceKind]) -> tuple[Knob, ...]:
    """The knobs of the ``nncf`` int8 technique (the first choice of each is the default)."""
    where: dict[str, Any] = {
        "devices": devices,
        "precisions": frozenset({Precision.INT8}),
        "techniques": frozenset({NNCF_TECHNIQUE}),
    }
    return (
        Knob("smooth_quant_alpha", _ALPHAS, **where),
        Knob("fp_layers", _FP_LAYERS, backoff=_FP_LAYERS_BACKOFF, **where),
    )


def _nncf() -> Any:
    try:
        import nncf
    except ImportError as exc:
        raise UnsupportedCandidate(
            "int8/nncf needs NNCF: pip install 'speedster-dist[int8]'"
        ) from exc
    return nncf


def _cosine_drop(
    reference: Sequence[Sequence[np.ndarray]], outputs: Sequence[Sequence[np.ndarray]]
) -> float:
    """1 minus the lowest mean row cosine over outputs (the ``cosine`` metric, unmasked)."""
    worst = 0.0
    for index in range(len(reference[0])):
        cosines = []
        for ref, out in zip(reference, outputs, strict=True):
            a = np.asarray(ref[index], np.float64).reshape(-1, max(ref[index].shape[-1:] or (1,)))
            b = np.asarray(out[index], np.float64).reshape(a.shape)
            if not np.isfinite(b).all():
                return float("inf")
            norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            dot = np.einsum("ij,ij->i", a, b)
            cosines.append(np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), 0.0))
        worst = max(worst, 1.0 - float(np.concatenate(cosines).mean()))
    return worst


def _quantized_matmuls(model: Any) -> list[Any]:
    """MatMuls fed by a FakeQuantize activation: the ones NNCF made int8."""
    return [
        op
        for op in model.get_ordered_ops()
        if op.get_type_name() == "MatMul"
        and any(op.input_value(i).get_node().get_type_name() == "FakeQuantize" for i in range(2))
    ]


def _with_float_input(model: Any, name: str) -> Any:
    """A copy of ``model`` in which MatMul ``name`` reads its activation unquantized."""
    copy = model.clone()
    op = next(o for o in copy.get_ordered_ops() if o.get_friendly_name() == name)
    for i in range(2):
        fq = op.input_value(i).get_node()
        if fq.get_type_name() == "FakeQuantize":
            op.input(i).replace_source_output(fq.input_value(0))
    return copy


def rank_sensitive_matmuls(
    float_model: Any, quantized: Any, samples: Sequence[Feed], run: Runner
) -> list[tuple[str, float]]:
    """Quantized MatMuls, most sensitive first, with the cosine drop of the quantized model
    when that MatMul alone gets its float input back (the lower, the more it matters).

    ``samples`` must be calibration samples: the ranking decides the build, and the
    held-out samples judge it.
    """
    reference = run(float_model, samples)
    scores = [
        (
            op.get_friendly_name(),
            _cosine_drop(
                reference, run(_with_float_input(quantized, op.get_friendly_name()), samples)
            ),
        )
        for op in _quantized_matmuls(quantized)
    ]
    return sorted(scores, key=lambda item: item[1])


def _quantize(
    nncf: Any, model: Any, dataset: Any, size: int, alpha: float, ignored: list[str]
) -> Any:
    # ModelType.TRANSFORMER turns SmoothQuant on with alpha 0.95 unless told otherwise:
    # the alpha is always given (-1 switches it off).
    parameters = nncf.AdvancedQuantizationParameters(
        smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=alpha)
    )
    return nncf.quantize(
        model.clone(),
        dataset,
        subset_size=size,
        model_type=nncf.ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.PERFORMANCE,
        ignored_scope=nncf.IgnoredScope(names=ignored) if ignored else None,
        advanced_parameters=parameters,
    )


def quantize_nncf(
    ov_model: Any,
    source: SourceModel,
    calibration: Sequence[Tensors],
    knobs: Mapping[str, Any],
    graph_inputs: set[str],
    run: Runner,
) -> tuple[Any, list[str]]:
    """The int8 ``ov.Model`` the knobs ask for, and the MatMuls kept in float.

    ``graph_inputs``: the model's input names (an export may drop unused inputs);
    ``run(model, feeds)``: the outputs of ``model`` compiled in f32 on each feed.
    """
    nncf = _nncf()
    alpha = float(knobs.get("smooth_quant_alpha", _ALPHAS[0]))
    fp_layers = int(knobs.get("fp_layers", _FP_LAYERS[0]))
    samples = pick_calibration(calibration, CALIBRATION_SAMPLES) or [tuple(source.example_inputs)]
    items = [feeds(source.input_names, s, graph_inputs) for s in samples]
    dataset = nncf.Dataset(items)
    quantized = _quantize(nncf, ov_model, dataset, len(items), alpha, [])
    if fp_layers <= 0:
        return quantized, []
    ranking = rank_sensitive_matmuls(
        ov_model, quantized, pick_calibration(items, SENSITIVITY_SAMPLES), run
    )
    kept = [name for name, _ in ranking[:fp_layers]]
    if not kept:  # NNCF quantized no MatMul: nothing to keep in float
        return quantized, []
    logger.info("int8/nncf keeps in float: %s", kept)
    return _quantize(nncf, ov_model, dataset, len(items), alpha, kept), kept
