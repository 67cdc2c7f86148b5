"""ONNX Runtime: CPU (fp32, int8 dynamic / static QDQ), CUDA (fp32, fp16) and its TensorRT EP.

The model is exported to ONNX once per node (see :func:`._onnx.export_onnx`), optionally
fused by the ORT transformer optimizer, then quantized or converted to fp16 as the
candidate asks. Saved as a plain ``.onnx`` file plus JSON options.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speedster_dist.backends._onnx import (
    check_external_data_inside,
    convert_float16,
    copy_onnx,
    export_onnx,
    feeds,
    optimize_transformer,
    quantize_dynamic_int8,
    quantize_static_with_knobs,
    static_int8_knobs,
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
_CPU_EP, _CUDA_EP, _TRT_EP = (
    "CPUExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
)
_TRT_CACHE = "trt_cache"


def _cap(device: DeviceKind, precision: Precision, technique: str = "") -> Capability:
    return Capability(device, precision, technique, sources=_SOURCES)


@dataclass(frozen=True)
class _Runtime:
    """How a session runs: execution providers and threads. Round-trips through JSON."""

    device: DeviceKind
    tensorrt: bool = False
    trt_fp16: bool = False
    intra_op_threads: int = 0  # 0 = ONNX Runtime's default (one per physical core)

    def providers(self, cache_dir: Path) -> list[Any]:
        if self.device is _CPU:
            return [_CPU_EP]
        gpu: list[Any] = [_CUDA_EP, _CPU_EP]
        if not self.tensorrt:
            return gpu
        # Engines are built on first use per input shape; caching them next to the model
        # keeps a reload (or the rebench after warm-up) from rebuilding them.
        trt_options = {
            "trt_fp16_enable": self.trt_fp16,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir),
        }
        return [(_TRT_EP, trt_options), *gpu]

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device.value,
            "tensorrt": self.tensorrt,
            "trt_fp16": self.trt_fp16,
            "intra_op_threads": self.intra_op_threads,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], device: DeviceKind) -> _Runtime:
        """From saved (untrusted) load options: flags must be booleans, threads 0..1024."""
        threads = data.get("intra_op_threads", 0)
        flags = [data.get("tensorrt", False), data.get("trt_fp16", False)]
        if not all(isinstance(f, bool) for f in flags) or not (
            isinstance(threads, int) and not isinstance(threads, bool) and 0 <= threads <= 1024
        ):
            raise UnsupportedCandidate("the saved onnxruntime options are not valid")
        return cls(device=device, tensorrt=flags[0], trt_fp16=flags[1], intra_op_threads=threads)


def _session(path: Path, runtime: _Runtime, cache_dir: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = runtime.intra_op_threads
    options.log_severity_level = 3  # errors only: fp16/quantized graphs warn a lot, harmlessly
    if runtime.tensorrt:
        cache_dir.mkdir(parents=True, exist_ok=True)
    return ort.InferenceSession(str(path), options, providers=runtime.providers(cache_dir))


class OrtCompiled:
    """An InferenceSession called like the flat module: tensors in, tuple of tensors out."""

    def __init__(
        self,
        path: Path,
        runtime: _Runtime,
        input_names: Sequence[str],
        output_names: Sequence[str],
        cache_dir: Path,
    ) -> None:
        self._path = path
        self._runtime = runtime
        self._input_names = tuple(input_names)
        self._cache_dir = cache_dir  # TensorRT engines; never the shared ONNX export cache
        self._session = _session(path, runtime, cache_dir)
        self._graph_inputs = frozenset(i.name for i in self._session.get_inputs())
        graph_outputs = [o.name for o in self._session.get_outputs()]
        # Ask for outputs by name so their order follows the source model; a user's ONNX
        # file whose names differ keeps the graph's own order.
        wanted = [n for n in output_names if n in graph_outputs]
        self._output_names = wanted if len(wanted) == len(output_names) else graph_outputs

    def __call__(self, *inputs: torch.Tensor) -> Tensors:
        outputs = self._session.run(
            self._output_names, feeds(self._input_names, inputs, self._graph_inputs)
        )
        return tuple(_to_torch(o) for o in outputs)

    def save(self, directory: Path) -> dict[str, Any]:
        name = "model.onnx"
        copy_onnx(self._path, directory / name)
        return {
            "file": name,
            "format": "onnx",
            "input_names": list(self._input_names),
            "output_names": list(self._output_names),
            "providers": [p if isinstance(p, str) else p[0] for p in self._provider_list()],
            **self._runtime.to_json(),
        }

    def _provider_list(self) -> list[Any]:
        return self._runtime.providers(self._cache_dir)


def _to_torch(array: Any) -> torch.Tensor:
    tensor = torch.from_numpy(np.asarray(array))
    return tensor.float() if tensor.is_floating_point() else tensor


class OnnxRuntimeBackend:
    """Builds ONNX Runtime sessions; called by the trial runner (never times itself)."""

    name = "onnxruntime"
    saves_code = False  # ONNX: data, loaded by default
    file_options = ("file",)  # load options that name one of the saved files
    capabilities = (
        _cap(_CPU, Precision.FP32),
        _cap(_CPU, Precision.INT8, "dynamic"),
        _cap(_CPU, Precision.INT8, "static"),
        _cap(_GPU, Precision.FP32),
        _cap(_GPU, Precision.FP16),
        _cap(_GPU, Precision.FP32, TRT_EP),
        _cap(_GPU, Precision.FP16, TRT_EP),
    )
    knobs = (
        # ORT transformer fusions (Attention, SkipLayerNorm, BiasGelu...) for Hugging Face
        # models whose model_type the optimizer knows; a no-op for anything else.
        Knob("graph_fusion", (True, False)),
        Knob("intra_op_threads", (0, 1, 2, 4), devices=frozenset({_CPU})),
        # int8 only: per-channel weight scales (more accurate, sometimes slower).
        Knob(
            "per_channel",
            (False, True),
            devices=frozenset({_CPU}),
            precisions=frozenset({Precision.INT8}),
        ),
        *static_int8_knobs(frozenset({_CPU})),
    )

    def unavailable_reason(self, device: DeviceKind) -> str | None:
        try:
            import onnxruntime as ort

            providers = set(ort.get_available_providers())
        except Exception as exc:  # missing or broken install: unavailable, not a crash
            return f"onnxruntime cannot be imported: {exc}"
        if device is _CPU:
            return None if _CPU_EP in providers else "onnxruntime has no CPUExecutionProvider"
        if _CUDA_EP not in providers:
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
        runtime = _Runtime(
            device=config.device,
            tensorrt=config.technique == TRT_EP,
            trt_fp16=config.technique == TRT_EP and config.precision is Precision.FP16,
            intra_op_threads=int(config.knobs.get("intra_op_threads", 0)),
        )
        return OrtCompiled(
            path, runtime, model.input_names, model.output_names, workdir / _TRT_CACHE
        )

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

            if _TRT_EP not in ort.get_available_providers():
                raise UnsupportedCandidate("onnxruntime has no TensorrtExecutionProvider")

    def load(self, directory: Path, options: Mapping[str, Any], device: DeviceKind) -> OrtCompiled:
        runtime = _Runtime.from_json(options, device)
        path = directory / str(options["file"])
        check_external_data_inside(path)
        return OrtCompiled(
            path,
            runtime,
            [str(n) for n in options["input_names"]],
            [str(n) for n in options["output_names"]],
            directory / _TRT_CACHE,
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
