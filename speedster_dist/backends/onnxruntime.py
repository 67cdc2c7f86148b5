"""ONNX Runtime: CPU (fp32, int8 dynamic / static QDQ), CUDA (fp32, fp16) and its TensorRT EP.

The model is exported to ONNX once per node (see :func:`._onnx.export_onnx`), optionally
fused by the ORT transformer optimizer, then quantized or converted to fp16 as the
candidate asks. Saved as a plain ``.onnx`` file plus JSON options.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from speedster_dist.backends._onnx import (
    calibration_note,
    check_external_data_inside,
    convert_float16,
    export_onnx,
    optimize_transformer,
    quantize_dynamic_int8,
    quantize_static_with_knobs,
    static_int8_knobs,
)
from speedster_dist.backends._ort_session import (
    CPU_EP,
    CUDA_EP,
    TRT_CACHE,
    TRT_EP_NAME,
    OrtCompiled,
    Runtime,
)
from speedster_dist.backends._protocol import (
    BuildConfig,
    Capability,
    Knob,
    SourceModel,
    Tensors,
    UnsupportedCandidate,
)
from speedster_dist.records import DeviceKind, Precision

__all__ = ["BACKEND", "OnnxRuntimeBackend", "OrtCompiled"]

_CPU, _GPU = DeviceKind.CPU, DeviceKind.GPU
_SOURCES = frozenset({"torch", "onnx"})
TRT_EP = "trt_ep"


def _cap(device: DeviceKind, precision: Precision, technique: str = "") -> Capability:
    return Capability(device, precision, technique, sources=_SOURCES)


def _trt_profile(
    path: Path, model: SourceModel, calibration: Sequence[Tensors]
) -> tuple[str, str, str] | None:
    """The TensorRT EP's min/opt/max shapes for the graph's dynamic inputs (None: static),
    from the example and held-in samples, so that engines are built once for the range."""
    import onnx

    from speedster_dist.backends.tensorrt import profile_shapes

    graph = onnx.load(str(path), load_external_data=False).graph
    parts: list[list[str]] = [[], [], []]
    for port in graph.input:
        if port.name not in model.input_names:
            continue  # an initializer listed as an input
        dims = [
            d.dim_value if d.HasField("dim_value") else -1 for d in port.type.tensor_type.shape.dim
        ]
        if -1 not in dims:
            continue
        index = model.input_names.index(port.name)
        samples = [model.example_inputs[index], *(s[index] for s in calibration)]
        for part, shape in zip(parts, profile_shapes(port.name, dims, samples), strict=True):
            part.append(f"{port.name}:{'x'.join(str(n) for n in shape)}")
    if not parts[0]:
        return None
    low, opt, high = (",".join(p) for p in parts)
    return low, opt, high


class OnnxRuntimeBackend:
    """Builds ONNX Runtime sessions; called by the trial runner (never times itself)."""

    name = "onnxruntime"
    saves_code = False  # ONNX: data, loaded by default
    file_options = ("file",)  # load options that name one of the saved files
    capabilities = (
        _cap(_CPU, Precision.FP32),
        _cap(_CPU, Precision.INT8, "dynamic"),
        _cap(_CPU, Precision.INT8, "static"),
        _cap(_GPU, Precision.FP32),  # the CUDA EP with TF32 off
        _cap(_GPU, Precision.TF32),  # the CUDA EP with TF32 on
        _cap(_GPU, Precision.FP16),
        # The TensorRT EP has no switch for TF32, which TensorRT uses by default: its
        # "fp32" is TF32, and is labelled so.
        _cap(_GPU, Precision.TF32, TRT_EP),
        _cap(_GPU, Precision.FP16, TRT_EP),
    )
    knobs = (
        # ORT transformer fusions (Attention, SkipLayerNorm, BiasGelu...) for Hugging Face
        # models whose model_type the optimizer knows; a no-op for anything else.
        Knob("graph_fusion", (True, False)),
        Knob("intra_op_threads", (0, 1, 2, 4), devices=frozenset({_CPU}), serving=(0, 1, 2, 4)),
        # int8 only: per-channel weight scales (more accurate, sometimes slower).
        Knob(
            "per_channel",
            (False, True),
            devices=frozenset({_CPU}),
            precisions=frozenset({Precision.INT8}),
        ),
        *static_int8_knobs(frozenset({_CPU})),
    )

    # Knobs that pay off only with requests in flight: tuned for throughput, not latency.
    throughput_knobs = (Knob("inter_op_threads", (0, 1, 2), devices=frozenset({_CPU})),)

    def unavailable_reason(self, device: DeviceKind) -> str | None:
        try:
            import onnxruntime as ort

            providers = set(ort.get_available_providers())
        except Exception as exc:  # missing or broken install: unavailable, not a crash
            return f"onnxruntime cannot be imported: {exc}"
        if device is _CPU:
            return None if CPU_EP in providers else "onnxruntime has no CPUExecutionProvider"
        if CUDA_EP not in providers:
            return "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
        if not torch.cuda.is_available():
            return "no CUDA device visible"
        return None

    def build(
        self, model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig, workdir: Path
    ) -> OrtCompiled:
        self._check_candidate(config)
        workdir.mkdir(parents=True, exist_ok=True)
        path = export_onnx(model, workdir)
        path = _fuse(path, model, config, workdir)
        path = _convert(path, model, calibration, config, workdir)
        tensorrt = config.technique == TRT_EP
        runtime = Runtime(
            device=config.device,
            tensorrt=tensorrt,
            trt_fp16=tensorrt and config.precision is Precision.FP16,
            tf32=config.precision is Precision.TF32,
            intra_op_threads=int(config.knobs.get("intra_op_threads", 0)),
            inter_op_threads=int(config.knobs.get("inter_op_threads", 0)),
            trt_profile=_trt_profile(path, model, calibration) if tensorrt else None,
        )
        compiled = OrtCompiled(
            path, runtime, model.input_names, model.output_names, workdir / TRT_CACHE
        )
        note = calibration_note(calibration) if config.technique == "static" else None
        compiled.notes = (note,) if note else ()
        return compiled

    def _check_candidate(self, config: BuildConfig) -> None:
        if not any(
            c.device is config.device
            and c.precision is config.precision
            and c.technique == config.technique
            for c in self.capabilities
        ):
            raise UnsupportedCandidate(
                f"onnxruntime cannot build {config.device.value}/{config.precision.value}"
                f"/{config.technique or '-'}"
            )
        reason = self.unavailable_reason(config.device)
        if reason is not None:
            raise UnsupportedCandidate(reason)
        if config.technique == TRT_EP:
            import onnxruntime as ort

            if TRT_EP_NAME not in ort.get_available_providers():
                raise UnsupportedCandidate("onnxruntime has no TensorrtExecutionProvider")

    def load(self, directory: Path, options: Mapping[str, Any], device: DeviceKind) -> OrtCompiled:
        runtime = Runtime.from_json(options, device)
        path = directory / str(options["file"])
        check_external_data_inside(path)
        return OrtCompiled(
            path,
            runtime,
            [str(n) for n in options["input_names"]],
            [str(n) for n in options["output_names"]],
            directory / TRT_CACHE,
        )


def _fuse(path: Path, model: SourceModel, config: BuildConfig, workdir: Path) -> Path:
    # TensorRT takes standard ONNX ops only: the optimizer's com.microsoft ops would split
    # the graph between TensorRT and CUDA.
    if not config.knobs.get("graph_fusion", True) or config.technique == TRT_EP:
        return path
    fused = optimize_transformer(
        path, workdir / "fused.onnx", model.hf_config, use_gpu=config.device is _GPU
    )
    return fused or path


def _convert(
    path: Path,
    model: SourceModel,
    calibration: Sequence[Tensors],
    config: BuildConfig,
    workdir: Path,
) -> Path:
    if config.precision is Precision.INT8 and config.technique == "dynamic":
        per_channel = bool(config.knobs.get("per_channel", False))
        return quantize_dynamic_int8(path, workdir / "int8_dynamic.onnx", per_channel)
    if config.precision is Precision.INT8:
        return quantize_static_with_knobs(
            path, model, calibration, config.knobs, workdir / "int8_static.onnx"
        )
    if config.precision is Precision.FP16 and config.technique != TRT_EP:
        return convert_float16(path, workdir / "fp16.onnx")
    return path


BACKEND = OnnxRuntimeBackend()
