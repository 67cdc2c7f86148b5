"""Best-first: the expected gain of each arm, so that a short budget tries the likely winners
first.

An arm's expected gain is its expected speedup over the eager fp32 baseline on one hardware
type. It comes from the history when the history measured that backend x precision on the
same hardware type (the median of its speedups there), else from a built-in prior: a factor
per backend (per device) times a factor per precision that depends on the CPU's features
(native bf16 through AVX512_BF16/AMX, int8 through VNNI). The prior only orders the trials:
every arm of the space is still tried when the budget allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from speedster_dist.records import DeviceKind, HardwareType, Precision

__all__ = ["SearchHistory", "default_gain", "expected_gain"]

# How much faster than eager torch each backend runs a model at the same precision: public
# benchmarks and our own measurements (OpenVINO and ONNX Runtime ahead on every CPU so far).
_BACKEND_FACTOR: Mapping[DeviceKind, Mapping[str, float]] = {
    DeviceKind.CPU: {
        "openvino": 1.7,
        "onnxruntime": 1.5,
        "torch_compile": 1.15,
        "torchscript": 1.05,
        "torch": 1.0,
        # Generation (batch 1, memory-bound decode; docs/generation.md's figures)
        "generate_onnxruntime": 2.3,
        "generate_openvino": 2.0,
        # after both of its parts: it pays off where their prefill and decode speeds differ
        "generate_split": 1.9,
    },
    DeviceKind.GPU: {
        "tensorrt": 2.0,
        "torch_compile": 1.3,
        "onnxruntime": 1.2,
        "torchscript": 1.05,
        "torch": 1.0,
    },
}
# CPU features that make a reduced precision native (else emulated, or widened, and slow).
_BF16_FEATURES = frozenset({"avx512_bf16", "amx_bf16"})
_FP16_FEATURES = frozenset({"avx512_fp16", "amx_fp16"})
_INT8_FEATURES = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# Static int8 (calibrated activations) skips the run-time quantization of dynamic int8.
# NNCF's int8 is static too, but keeps its most sensitive MatMuls in float (a little slower).
_TECHNIQUE_FACTOR = {"static": 1.15, "nncf": 1.1}
_GPU_PRECISION = {
    Precision.FP32: 1.0,
    Precision.TF32: 1.5,
    Precision.FP16: 2.2,
    Precision.BF16: 2.0,
    Precision.INT8: 2.5,
}


def _cpu_precision_factor(precision: Precision, features: frozenset[str]) -> float:
    if precision is Precision.BF16:
        return 1.6 if features & _BF16_FEATURES else 0.6
    if precision is Precision.FP16:
        return 1.5 if features & _FP16_FEATURES else 0.5
    if precision is Precision.INT4:  # weight-only: the decode loop reads fewer bytes
        return 2.8
    if precision is Precision.INT8:
        # Without VNNI, int8 dot products take three instructions (and saturate on AVX2).
        return 2.0 if features & _INT8_FEATURES else 0.7
    return 1.0


def default_gain(
    backend: str, precision: Precision, technique: str, hardware: HardwareType
) -> float:
    """The built-in prior: expected speedup of an arm over eager fp32 on ``hardware``.

    Backends it does not know count as eager torch (backend factor 1).
    """
    backend_factor = _BACKEND_FACTOR[hardware.device].get(backend, 1.0)
    if hardware.device is DeviceKind.GPU:
        precision_factor = _GPU_PRECISION.get(precision, 1.0)
    else:
        precision_factor = _cpu_precision_factor(precision, hardware.features)
    return backend_factor * precision_factor * _TECHNIQUE_FACTOR.get(technique, 1.0)


@dataclass(frozen=True)
class SearchHistory:
    """What earlier searches teach this one, per hardware-type key (plain data, no pyarrow).

    ``speedups``: ``"backend/precision"`` -> the median speedup measured over the baseline of
    the same run. ``winners``: the configs that won earlier runs, best first, each a mapping
    with ``backend``, ``precision``, ``technique`` and ``knobs``.
    """

    speedups: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    winners: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)


def expected_gain(
    backend: str,
    precision: Precision,
    technique: str,
    hardware: HardwareType,
    history: SearchHistory | None = None,
) -> float:
    """The history's median speedup of ``backend/precision`` on this hardware type when it
    has one, else :func:`default_gain`."""
    learned = (history.speedups if history else {}).get(hardware.key, {})
    measured = learned.get(f"{backend}/{precision.value}")
    if measured is not None:
        # The technique's factor still separates two int8 arms the history pools together.
        return float(measured) * _TECHNIQUE_FACTOR.get(technique, 1.0)
    return default_gain(backend, precision, technique, hardware)
