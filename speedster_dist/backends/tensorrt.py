"""TensorRT on NVIDIA GPUs: fp32, fp16 and static int8 engines built from the ONNX file.

The engine is built with the TensorRT Python API (10.x; 11.x is handled too) from the
ONNX export, or from the QDQ ONNX of :func:`._onnx.quantize_static_qdq` for int8
(explicit quantization: the Q/DQ nodes say what runs in int8). It runs on torch CUDA
tensors (``set_tensor_address`` + ``execute_async_v3`` on torch's current stream), so
neither pycuda nor cuda-python is needed. Saved as the serialized ``.engine`` plus JSON
options; an engine only loads with the TensorRT version (and GPU) that built it.

``tensorrt`` is imported inside functions: this module imports without it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import torch

from speedster_dist.backends._onnx import (
    convert_float16,
    export_onnx,
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
from speedster_dist.backends._runners import ThreadRunner
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.serving import Overlap, Runner

__all__ = ["BACKEND", "TensorRTBackend", "TensorRTCompiled", "profile_shapes"]

_GPU = DeviceKind.GPU
_SOURCES = frozenset({"torch", "onnx"})
_ENGINE = "model.engine"
_GIB = 1 << 30
# Dynamic axes accept up to this many times the largest size seen in the samples, so that
# held-out inputs a little larger than the calibration ones still run.
_MAX_HEADROOM = 2

Shape = tuple[int, ...]


@cache
def _probe_tensorrt() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt not installed"
    try:
        import tensorrt  # noqa: F401
    except Exception as err:  # a broken install (missing libnvinfer...) must not raise
        return f"tensorrt is installed but cannot be imported: {err}"
    return None


def _trt() -> Any:
    import tensorrt as trt

    return trt


@cache
def _logger() -> Any:
    # Messages go to stderr, whose tail the trial runner records with a failed trial.
    trt = _trt()
    return trt.Logger(trt.Logger.WARNING)


def profile_shapes(
    name: str, graph_shape: Sequence[int], samples: Sequence[torch.Tensor]
) -> tuple[Shape, Shape, Shape]:
    """(min, opt, max) shapes of one engine input whose graph shape has -1 (dynamic) dims.

    ``samples[0]`` is the example input: its sizes are the ones TensorRT optimizes for.
    A dynamic dim may shrink to 1 and grow to ``_MAX_HEADROOM`` times the largest size in
    ``samples``; static dims keep their graph size.
    """
    if any(len(t.shape) != len(graph_shape) for t in samples):
        raise UnsupportedCandidate(f"input {name!r}: samples do not have rank {len(graph_shape)}")
    low, opt, high = [], [], []
    for axis, size in enumerate(graph_shape):
        if size >= 0:
            low.append(size)
            opt.append(size)
            high.append(size)
            continue
        seen = [int(t.shape[axis]) for t in samples]
        low.append(1)
        opt.append(seen[0])
        high.append(max(seen) * _MAX_HEADROOM)
    return tuple(low), tuple(opt), tuple(high)


def _onnx_file(
    model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig, workdir: Path
) -> Path:
    """The ONNX file the engine is built from, for this precision."""
    onnx_path = export_onnx(model, workdir)
    if config.precision is Precision.INT8:
        if config.technique != "static":
            raise UnsupportedCandidate(
                f"tensorrt int8 needs technique 'static', not {config.technique!r}"
            )
        # TensorRT's parser takes symmetric Q/DQ only (zero points of 0).
        return quantize_static_with_knobs(
            onnx_path, model, calibration, config.knobs, workdir / "model.qdq.onnx", symmetric=True
        )
    if config.precision is Precision.FP16 and not hasattr(_trt().BuilderFlag, "FP16"):
        # TensorRT 11 removed the precision flags: networks are strongly typed, so fp16 must
        # be in the graph itself (inputs and outputs stay fp32).
        return convert_float16(onnx_path, workdir / "model.fp16.onnx")
    return onnx_path


def _parse(builder: Any, onnx_path: Path) -> tuple[Any, Any]:
    trt = _trt()
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10+
    parser = trt.OnnxParser(network, _logger())
    # parse_from_file (not parse(bytes)) finds external data files next to the model.
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UnsupportedCandidate(f"TensorRT cannot parse the ONNX model: {errors}")
    return network, parser


def _add_profile(
    builder: Any, network: Any, config: Any, model: SourceModel, calibration: Sequence[Tensors]
) -> None:
    """One optimization profile covering the dynamic dims of every network input."""
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    dynamic = [tensor for tensor in inputs if any(d < 0 for d in tensor.shape)]
    if not dynamic:
        return
    profile = builder.create_optimization_profile()
    samples = [model.example_inputs, *calibration]
    for tensor in dynamic:
        index = _source_index(model.input_names, tensor.name)
        low, opt, high = profile_shapes(
            tensor.name, tuple(tensor.shape), [s[index] for s in samples]
        )
        profile.set_shape(tensor.name, low, opt, high)
    config.add_optimization_profile(profile)


def _source_index(input_names: Sequence[str], name: str) -> int:
    if name not in input_names:
        raise UnsupportedCandidate(
            f"engine input {name!r} is not one of the model inputs {list(input_names)}"
        )
    return list(input_names).index(name)


def _set_precision(config: Any, precision: Precision) -> None:
    # TensorRT 10: weakly typed networks; the flag lets TensorRT choose fp16 (or the int8
    # of the Q/DQ nodes) per layer. TensorRT 11 has no such flags (see _onnx_file).
    flags = {Precision.FP16: "FP16", Precision.INT8: "INT8"}
    flag = getattr(_trt().BuilderFlag, flags.get(precision, ""), None)
    if flag is not None:
        config.set_flag(flag)
    # TF32 is on by default in a builder: "fp32" means IEEE fp32, so it is cleared for fp32
    # (and for fp16/int8, whose fp32 layers stay fp32); only a "tf32" candidate keeps it.
    tf32 = getattr(_trt().BuilderFlag, "TF32", None)
    if tf32 is not None and precision is not Precision.TF32:
        config.clear_flag(tf32)


def build_engine(
    onnx_path: Path, model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig
) -> bytes:
    """Serialized engine for ``onnx_path`` (raises :class:`UnsupportedCandidate` on failure)."""
    trt = _trt()
    builder = trt.Builder(_logger())
    network, _parser = _parse(builder, onnx_path)  # the parser must outlive the network
    builder_config = builder.create_builder_config()
    workspace = int(float(config.knobs.get("workspace_gb", 4)) * _GIB)
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    builder_config.builder_optimization_level = int(
        config.knobs.get("builder_optimization_level", 3)
    )
    _set_precision(builder_config, config.precision)
    _add_profile(builder, network, builder_config, model, calibration)
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise UnsupportedCandidate("TensorRT could not build an engine (its log is on stderr)")
    return bytes(memoryview(serialized))


@cache
def _torch_dtypes() -> dict[Any, torch.dtype]:
    trt = _trt()
    table = {
        "float32": torch.float32,
        "float16": torch.float16,
        "bfloat16": torch.bfloat16,
        "int64": torch.int64,
        "int32": torch.int32,
        "int8": torch.int8,
        "uint8": torch.uint8,
        "bool": torch.bool,
    }
    return {getattr(trt, name): dtype for name, dtype in table.items() if hasattr(trt, name)}


_ONE_CONTEXT = Overlap(
    "serial", overlaps=False, note="one TensorRT execution context: requests run one at a time"
)


class TensorRTCompiled:
    """A deserialized engine with one execution context, fed with torch CUDA tensors.

    Inputs are matched by name (the ONNX graph may have dropped unused inputs); outputs
    come back as CUDA tensors in the source model's output order, floats as float32.
    """

    def __init__(
        self, engine_bytes: bytes, input_names: Sequence[str], output_names: Sequence[str]
    ) -> None:
        trt = _trt()
        self._bytes = engine_bytes
        self._input_names = tuple(input_names)
        self._output_names = tuple(output_names)
        # The runtime must outlive the engine it deserialized. Engines with embedded host
        # code are refused (engine_host_code_allowed stays False): an engine file is data.
        self._runtime = trt.Runtime(_logger())
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise UnsupportedCandidate("TensorRT could not deserialize the engine")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._engine_inputs = [
            (n, _source_index(self._input_names, n)) for n in names if is_input[n]
        ]
        self._engine_outputs = self._output_order([n for n in names if not is_input[n]])
        dtypes = _torch_dtypes()
        self._dtypes = {n: dtypes[self._engine.get_tensor_dtype(n)] for n in names}

    def _output_order(self, engine_outputs: list[str]) -> list[str]:
        if set(self._output_names) <= set(engine_outputs):
            return list(self._output_names)
        if len(engine_outputs) != len(self._output_names):
            raise UnsupportedCandidate(
                f"the engine has {len(engine_outputs)} outputs, the model {len(self._output_names)}"
            )
        return engine_outputs

    def io_dtypes(self) -> dict[str, str]:
        return {name: str(dtype).removeprefix("torch.") for name, dtype in self._dtypes.items()}

    def __call__(self, *inputs: torch.Tensor) -> Tensors:
        device = torch.device("cuda", torch.cuda.current_device())
        # Keep references to the converted inputs until the work is enqueued.
        kept = []
        for name, index in self._engine_inputs:
            tensor = inputs[index].to(device=device, dtype=self._dtypes[name]).contiguous()
            if not self._context.set_input_shape(name, tuple(tensor.shape)):
                raise ValueError(
                    f"input {name!r} of shape {tuple(tensor.shape)} is outside "
                    "the engine's optimization profile"
                )
            self._context.set_tensor_address(name, tensor.data_ptr())
            kept.append(tensor)
        outputs = [self._allocate(name, device) for name in self._engine_outputs]
        stream = torch.cuda.current_stream(device)
        # Same stream as the input copies and whatever reads the outputs: no extra sync.
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (its log is on stderr)")
        return tuple(o.float() if o.is_floating_point() else o for o in outputs)

    def _allocate(self, name: str, device: torch.device) -> torch.Tensor:
        shape = tuple(self._context.get_tensor_shape(name))
        if any(size < 0 for size in shape):
            raise UnsupportedCandidate(f"output {name!r} has a data-dependent shape {shape}")
        tensor = torch.empty(shape, dtype=self._dtypes[name], device=device)
        self._context.set_tensor_address(name, tensor.data_ptr())
        return tensor

    def runner(self, concurrency: int) -> Runner:
        """One execution context is not safe to run from several threads: requests in flight
        run one at a time (a context per CUDA stream would overlap them; not done yet)."""
        return ThreadRunner(self, 1, _ONE_CONTEXT)

    def save(self, directory: Path) -> dict[str, Any]:
        (directory / _ENGINE).write_bytes(self._bytes)
        return {
            "engine": _ENGINE,
            "input_names": list(self._input_names),
            "output_names": list(self._output_names),
            "io_dtypes": self.io_dtypes(),
            "tensorrt_version": str(_trt().__version__),
        }


class TensorRTBackend:
    """TensorRT engines on NVIDIA GPUs."""

    name = "tensorrt"
    saves_code = False  # a serialized engine without plugin libraries: data
    file_options = ("engine",)  # load options that name one of the saved files
    capabilities = (
        Capability(_GPU, Precision.FP32, sources=_SOURCES),
        Capability(_GPU, Precision.TF32, sources=_SOURCES),
        Capability(_GPU, Precision.FP16, sources=_SOURCES),
        Capability(_GPU, Precision.INT8, "static", sources=_SOURCES),
    )
    knobs: tuple[Knob, ...] = (
        Knob("builder_optimization_level", (3, 5), devices=frozenset({_GPU})),
        Knob("workspace_gb", (4, 8), devices=frozenset({_GPU})),
        *static_int8_knobs(frozenset({_GPU})),
    )

    def unavailable_reason(self, device: DeviceKind) -> str | None:
        if device is not _GPU:
            return "tensorrt runs on NVIDIA GPUs only"
        reason = _probe_tensorrt()
        if reason is None and not torch.cuda.is_available():
            reason = "no CUDA device visible to torch"
        return reason

    def build(
        self, model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig, workdir: Path
    ) -> TensorRTCompiled:
        if config.device is not _GPU:
            raise UnsupportedCandidate("tensorrt builds for the GPU only")
        onnx_path = _onnx_file(model, calibration, config, workdir)
        engine = build_engine(onnx_path, model, calibration, config)
        return TensorRTCompiled(engine, model.input_names, model.output_names)

    def load(
        self, directory: Path, options: Mapping[str, Any], device: DeviceKind
    ) -> TensorRTCompiled:
        """Deserialize the saved engine; it must come from this TensorRT version."""
        built_with, here = str(options.get("tensorrt_version", "")), str(_trt().__version__)
        if built_with != here:
            raise UnsupportedCandidate(
                f"engine built with TensorRT {built_with or '?'}, this is {here}; rebuild it"
            )
        engine = (directory / str(options["engine"])).read_bytes()
        return TensorRTCompiled(engine, options["input_names"], options["output_names"])


BACKEND = TensorRTBackend()
