"""Graph rewrites: ONNX Runtime's transformer fusions (cached beside a cached export) and
fp16 conversion."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from speedster_dist.backends._onnx.export import short_error
from speedster_dist.backends._onnx.files import is_large
from speedster_dist.cache import cache_root

__all__ = ["convert_float16", "optimize_transformer"]

logger = logging.getLogger(__name__)

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
        logger.warning(
            "ORT transformer optimizer failed (%s); using the plain graph", short_error(exc)
        )
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
