"""ONNX helpers shared by the ONNX Runtime, OpenVINO and TensorRT backends.

:mod:`.export` (cached per node), :mod:`.files` (external data, feeds), :mod:`.quantize`
(int8 static Q/DQ and dynamic) and :mod:`.rewrite` (ORT transformer fusions, fp16).
``onnx`` and ``onnxruntime`` are imported inside the functions, so importing this package
never needs them.
"""

from speedster_dist.backends._onnx.export import MODEL_FILE, export_onnx
from speedster_dist.backends._onnx.files import (
    EXTERNAL_DATA_BYTES,
    check_external_data_inside,
    copy_onnx,
    feeds,
    graph_input_names,
    is_large,
)
from speedster_dist.backends._onnx.quantize import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION_SAMPLES,
    FEW_DISTINCT,
    calibration_note,
    distinct_samples,
    pick_calibration,
    quantize_dynamic_int8,
    quantize_static_qdq,
    quantize_static_with_knobs,
    static_int8_knobs,
)
from speedster_dist.backends._onnx.rewrite import convert_float16, optimize_transformer

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_CALIBRATION_SAMPLES",
    "EXTERNAL_DATA_BYTES",
    "FEW_DISTINCT",
    "MODEL_FILE",
    "calibration_note",
    "check_external_data_inside",
    "convert_float16",
    "copy_onnx",
    "distinct_samples",
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
