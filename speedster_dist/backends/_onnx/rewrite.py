"""Graph rewrites: ONNX Runtime's transformer fusions (cached in their own cache entries) and
fp16 conversion."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from speedster_dist.backends._onnx.export import short_error
from speedster_dist.backends._onnx.files import external_files, is_large
from speedster_dist.cache import cache_dir, cache_root, file_sha256, find_entry, publish_entry

__all__ = ["convert_float16", "optimize_transformer"]

logger = logging.getLogger(__name__)

_CACHE_KIND = "fused"  # the cache folder of fused graphs (see speedster_dist.cache)
_FUSED_FILE = "model.onnx"

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
    cached export is cached too (the fusion takes seconds, and every fused trial on the node
    needs the same file), in its own entry of ``cache_root()/fused`` keyed by the export's
    SHA-256 and the fusion settings, never beside the export (a folder other trials read):
    then the cached file is returned, not ``out_path``.
    """
    model_type = _OPTIMIZER_TYPES.get(str((hf_config or {}).get("model_type", "")))
    if hf_config is None or model_type is None:
        return None
    settings = {
        "model_type": model_type,
        "num_heads": _first_int(hf_config, "num_attention_heads", "n_head", "num_heads"),
        "hidden_size": _first_int(hf_config, "hidden_size", "n_embd", "d_model"),
        # Python fusions only: the session applies ORT's graph optimizations at load
        # anyway, and the optimizer's own ORT pre-pass (level 1) is slower, fuses no
        # more, and on static-shape BERT exports it blocks the Attention fusion.
        "opt_level": 0,
        "use_gpu": use_gpu,
    }
    entry = _fused_entry(Path(onnx_path), settings)
    found = find_entry(*entry) if entry is not None else None
    if found is not None:
        return found / _FUSED_FILE
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        optimized = optimize_model(str(onnx_path), **settings)
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
    if entry is not None:
        _publish_fused(out_path, *entry)
    return out_path


def _fused_entry(onnx_path: Path, settings: Mapping[str, Any]) -> tuple[Path, str] | None:
    """The cache folder and key of the fused form of a cached export (this module's, or a
    search's shared one); None for a file outside the node cache (a user's file, an uncached
    export), one with external data, or an unusable cache."""
    import onnxruntime

    try:
        if cache_root().resolve() not in onnx_path.resolve().parents:
            return None
        if external_files(onnx_path):
            return None
        identity = {"export_sha256": file_sha256(onnx_path), "ort": onnxruntime.__version__}
        folder = cache_dir(_CACHE_KIND)
    except OSError as exc:  # an unusable cache only costs each trial a fusion
        logger.info("the fused graph of %s is not cached: %s", onnx_path, exc)
        return None
    text = json.dumps({**identity, **settings}, sort_keys=True)
    return folder, hashlib.sha256(text.encode()).hexdigest()[:32]


def _publish_fused(source: Path, folder: Path, key: str) -> None:
    try:
        publish_entry(folder, key, lambda files: shutil.copyfile(source, files / _FUSED_FILE))
    except OSError as exc:  # a read-only or full cache only costs the next trial a fusion
        logger.info("could not cache the fused graph in %s: %s", folder, exc)


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
