"""The portable fallback: the original model as a data format any CPU machine can run.

A learner runs it on machines no winner fits. It is the original model exported to ONNX and
run by ONNX Runtime on the CPU (no fusions, so nothing is specific to one CPU), checked
against the original's outputs like any fp32 candidate. Being data, it loads without
``trust_code``; only a model that does not export falls back to the eager baseline's
TorchScript files (a program).
"""

from __future__ import annotations

import logging
import shutil

from speedster_dist.backends import BuildConfig, get_backend
from speedster_dist.cache import scratch_dir
from speedster_dist.measure import numeric_precision_drop
from speedster_dist.records import DeviceKind, Precision, SavedCandidate
from speedster_dist.runtime._trial import FP32_TOLERANCE, TrialPayload, save_compiled

__all__ = ["onnx_portable"]

logger = logging.getLogger(__name__)
_BACKEND = "onnxruntime"


def onnx_portable(payload: TrialPayload) -> SavedCandidate | None:
    """The payload's model as ONNX for onnxruntime on CPU; None (with the reason logged) when
    onnxruntime is missing, the model does not export, or the export's outputs differ."""
    backend = get_backend(_BACKEND)
    if backend.unavailable_reason(DeviceKind.CPU) is not None:
        return None
    workdir = scratch_dir("portable-")
    try:
        config = BuildConfig(Precision.FP32, DeviceKind.CPU, knobs={"graph_fusion": False})
        compiled = backend.build(payload.source, [], config, workdir / "build")
        outputs = [tuple(t.detach().cpu() for t in compiled(*s)) for s in payload.validation]
        drop = numeric_precision_drop(payload.reference_outputs, outputs)
        if drop > FP32_TOLERANCE:
            logger.warning("the ONNX export differs from the model (drop %.3g): not portable", drop)
            return None
        return save_compiled(compiled, _BACKEND, DeviceKind.CPU, workdir)
    except Exception as exc:  # the model does not export: the TorchScript fallback stays
        logger.warning("no ONNX portable fallback (%s: %s)", type(exc).__name__, exc)
        return None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
