"""OpenVINO on the CPU: fp32, bf16 (only where the CPU does bf16 natively), static int8,
and accuracy-aware int8 with NNCF (:mod:`._openvino_int8`).

The model is read from the ONNX file (the user's, or the cached export); static int8 reads
the QDQ ONNX model from :func:`._onnx.quantize_static_qdq`, which OpenVINO runs with int8
kernels; ``nncf`` int8 quantizes the OpenVINO model itself and runs its float part in bf16
where the CPU has bf16. Saved as OpenVINO IR (``model.xml`` + ``model.bin``) plus the
JSON-able compile properties, so loading compiles exactly what was timed. ``openvino`` is
imported lazily.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speedster_dist.backends._onnx import (
    calibration_note,
    export_onnx,
    feeds,
    quantize_static_with_knobs,
    static_int8_knobs,
)
from speedster_dist.backends._openvino_async import AsyncQueueRunner
from speedster_dist.backends._openvino_int8 import NNCF_TECHNIQUE, nncf_knobs, quantize_nncf
from speedster_dist.backends._protocol import (
    BuildConfig,
    Capability,
    Knob,
    SourceModel,
    Tensors,
    UnsupportedCandidate,
)
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.serving import Runner

__all__ = ["BACKEND", "OpenVinoBackend", "OpenVinoCompiled"]

_CPU = DeviceKind.CPU
_SOURCES = frozenset({"torch", "onnx"})
# OpenVINO only runs bf16 on CPUs with bf16 instructions; elsewhere it keeps f32.
_BF16_FEATURES = frozenset({"avx512_bf16", "amx_bf16"})
_XML, _BIN = "model.xml", "model.bin"
# INFERENCE_PRECISION_HINT per precision. It is always set: on bf16-capable CPUs OpenVINO
# defaults to bf16, which would make an "fp32" candidate silently run in bf16. For static
# int8 the quantized ops come from the QDQ graph and the rest stays f32; NNCF int8 runs the
# rest in bf16 where the CPU has it (:func:`_int8_float_hint`).
_PRECISION_HINTS = {Precision.FP32: "f32", Precision.BF16: "bf16", Precision.INT8: "f32"}
_INT8_TECHNIQUES = ("static", NNCF_TECHNIQUE)


@cache
def _core() -> Any:
    """One ``ov.Core`` per process (creating one costs ~0.1 s and loads the CPU plugin)."""
    import openvino as ov

    return ov.Core()


@cache
def _probe() -> str | None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "openvino not installed: pip install 'speedster-dist[openvino]' (or [cpu])"
    try:
        devices = _core().available_devices
    except Exception as err:  # a broken install must not break the search
        return f"openvino is installed but unusable: {err}"
    return None if "CPU" in devices else f"OpenVINO sees no CPU device (devices: {devices})"


def compile_properties(precision: Precision, knobs: Mapping[str, Any]) -> dict[str, str]:
    """OpenVINO CPU compile properties for a candidate (strings: they round-trip JSON)."""
    properties = {
        "INFERENCE_PRECISION_HINT": _PRECISION_HINTS[precision],
        "PERFORMANCE_HINT": str(knobs.get("performance_hint", "LATENCY")),
    }
    # 0 means "leave it to OpenVINO": streams follow the performance hint, threads the cores.
    if int(knobs.get("num_streams", 0)) > 0:
        properties["NUM_STREAMS"] = str(int(knobs["num_streams"]))
    if int(knobs.get("inference_num_threads", 0)) > 0:
        properties["INFERENCE_NUM_THREADS"] = str(int(knobs["inference_num_threads"]))
    return properties


def _port_name(port: Any, wanted: Sequence[str]) -> str:
    """The name of ``port`` that is one of ``wanted`` (a port may carry several names)."""
    names = port.get_names()
    return next((name for name in wanted if name in names), port.get_any_name())


def _output_order(ports: Sequence[Any], output_names: Sequence[str]) -> list[int]:
    """Index of the compiled output for each source output (by name, else by position)."""
    by_name = {name: i for i, port in enumerate(ports) for name in port.get_names()}
    if all(name in by_name for name in output_names):
        return [by_name[name] for name in output_names]
    if len(ports) != len(output_names):
        raise UnsupportedCandidate(
            f"the OpenVINO model has {len(ports)} outputs, the source model {len(output_names)}"
        )
    return list(range(len(ports)))


def _fixed_shapes(ports: Sequence[Any], names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for port in ports:
        shape = port.get_partial_shape()
        if not shape.is_static:
            return {}
        shapes[_port_name(port, names)] = tuple(int(d) for d in shape.to_shape())
    return shapes


def _to_torch(array: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(array)
    return tensor.float() if tensor.is_floating_point() else tensor


class OpenVinoCompiled:
    """An OpenVINO model compiled for the CPU, run through one synchronous InferRequest.

    Inputs are matched by name: the ONNX graph may have dropped inputs the model never
    reads (e.g. ``token_type_ids``), so only the names the compiled model has are fed.
    """

    def __init__(
        self,
        model: Any,
        properties: Mapping[str, str],
        input_names: Sequence[str],
        output_names: Sequence[str],
    ) -> None:
        self._model = model
        self._properties = dict(properties)
        self._input_names = tuple(input_names)
        self._output_names = tuple(output_names)
        self._compiled = _core().compile_model(model, "CPU", self._properties)
        self._request = self._compiled.create_infer_request()
        self._keep = {_port_name(port, self._input_names) for port in self._compiled.inputs}
        missing = self._keep - set(self._input_names)
        if missing:
            raise UnsupportedCandidate(
                f"OpenVINO model inputs {sorted(missing)} are not model inputs"
            )
        self._order = _output_order(self._compiled.outputs, self._output_names)
        # The shapes it only takes when compiled for fixed shapes (empty: dynamic axes).
        self.fixed_shapes = _fixed_shapes(self._compiled.inputs, self._input_names)
        self.float_layers: tuple[str, ...] = ()  # MatMuls an NNCF int8 build kept in float
        self.notes: tuple[str, ...] = ()  # for the summary (e.g. few distinct calibration)

    def runtime_precisions(self, layer_type: str = "FullyConnected") -> list[str]:
        """The precision OpenVINO runs each ``layer_type`` layer in (``"i8"``, ``"bf16"``,
        ``"f32"``), from the compiled model's execution graph."""
        found = []
        for op in self._compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) == layer_type:
                found.append(info["runtimePrecision"].astype(str).lower())
        return found

    @property
    def inference_precision(self) -> str:
        """The precision OpenVINO actually compiled for, e.g. ``"f32"`` (it may ignore the hint)."""
        value = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        return str(value.get_type_name() if hasattr(value, "get_type_name") else value)

    def __call__(self, *inputs: torch.Tensor) -> Tensors:
        # share_inputs: OpenVINO reads the numpy views of the tensors without copying them.
        # share_outputs=False: the request reuses its output buffers on the next call.
        results = self._request.infer(self._feed(inputs), share_inputs=True, share_outputs=False)
        return self._ordered(results.to_tuple())

    def _feed(self, inputs: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
        return feeds(self._input_names, inputs, self._keep)

    def _ordered(self, results: Sequence[np.ndarray]) -> Tensors:
        return tuple(_to_torch(results[i]) for i in self._order)

    def _request_outputs(self, request: Any) -> Tensors:
        # Copied: the request reuses its output buffers for its next inference.
        return self._ordered([np.array(t.data) for t in request.output_tensors])

    def runner(self, concurrency: int) -> Runner:
        """Requests in flight through OpenVINO's ``AsyncInferQueue`` (see
        :mod:`._openvino_async`): parallel when compiled for several streams."""
        return AsyncQueueRunner(self._compiled, concurrency, self._feed, self._request_outputs)

    def save(self, directory: Path) -> dict[str, Any]:
        import openvino as ov

        # compress_to_fp16 defaults to True: it would change the fp32 weights that were timed.
        ov.save_model(self._model, str(directory / _XML), compress_to_fp16=False)
        return {
            "xml": _XML,
            "bin": _BIN,
            "properties": self._properties,
            "input_names": list(self._input_names),
            "output_names": list(self._output_names),
        }


def _int8_float_hint(config: BuildConfig) -> str:
    """The precision of an NNCF int8 model's float part: bf16 where the CPU has it (the
    hardware type's features, else OpenVINO's own view of this CPU), else f32."""
    if config.hardware is not None:
        return "bf16" if config.hardware.has_any(_BF16_FEATURES) else "f32"
    capabilities = _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in capabilities else "f32"


def _run_f32(ov_model: Any, items: Sequence[Mapping[str, np.ndarray]]) -> list[list[np.ndarray]]:
    """``ov_model``'s outputs on each feed, compiled in f32 (NNCF's sensitivity ranking)."""
    request = _core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    infer = request.create_infer_request()
    return [[np.array(r) for r in infer.infer(dict(item)).to_tuple()] for item in items]


def _read_model(
    model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig, workdir: Path
) -> tuple[Any, list[str]]:
    """The ``ov.Model`` to compile (from the ONNX export, its static int8 QDQ form, or NNCF's
    int8 model) and the MatMuls NNCF kept in float."""
    onnx_path = export_onnx(model, workdir)
    if config.precision is Precision.INT8 and config.technique not in _INT8_TECHNIQUES:
        raise UnsupportedCandidate(
            f"openvino int8 supports techniques {list(_INT8_TECHNIQUES)}, not {config.technique!r}"
        )
    if config.precision is Precision.INT8 and config.technique == "static":
        onnx_path = quantize_static_with_knobs(
            onnx_path, model, calibration, config.knobs, workdir / "model.qdq.onnx"
        )
    ov_model = _core().read_model(str(onnx_path))
    nncf = config.precision is Precision.INT8 and config.technique == NNCF_TECHNIQUE
    float_layers: list[str] = []
    if nncf and model.dynamic_by_default and _calibrated_at_other_shapes(model, calibration):
        # A build for a load point's batch (``source_for_batch``): NNCF calibrates on the
        # held-in samples, one request each, which a model fixed to the batch's shape cannot
        # take. Quantized with the export's dynamic axes, then fixed to the batch.
        ov_model, float_layers = _quantize_nncf(ov_model, model, calibration, config)
        nncf = False
    if model.dynamic_by_default:
        _fix_to_example(ov_model, model)
    else:
        _make_axes_dynamic(ov_model, model)
    if nncf:
        return _quantize_nncf(ov_model, model, calibration, config)
    return ov_model, float_layers


def _quantize_nncf(
    ov_model: Any, model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig
) -> tuple[Any, list[str]]:
    inputs = {_port_name(port, model.input_names) for port in ov_model.inputs}
    return quantize_nncf(ov_model, model, calibration, config.knobs, inputs, _run_f32)


def _calibrated_at_other_shapes(model: SourceModel, calibration: Sequence[Tensors]) -> bool:
    """Whether some calibration sample's shapes are not the example's (the example is a
    load point's batch, the samples one request each)."""
    example = [tuple(t.shape) for t in model.example_inputs]
    return any([tuple(t.shape) for t in sample] != example for sample in calibration)


def _fix_to_example(ov_model: Any, model: SourceModel) -> None:
    """Compile for the example's shapes: on MiniLM (batch 1, 128 tokens) OpenVINO's dynamic
    shapes cost ~8% at the samples' shape (docs/benchmarks.md), above the 3% a learner that
    takes any length may cost; only the default text axes are fixed, never axes the samples
    vary along or the user asked for (``dynamic_info``)."""
    shapes = {}
    for port in ov_model.inputs:
        name = _port_name(port, model.input_names)
        if name in model.input_names:
            shapes[port] = list(model.example_inputs[model.input_names.index(name)].shape)
    if shapes:
        ov_model.reshape(shapes)


def _make_axes_dynamic(ov_model: Any, model: SourceModel) -> None:
    """Reshape inputs whose declared dynamic axes are static in the graph (e.g. a user's
    ONNX file exported with fixed shapes); exports with dynamic axes need nothing."""
    new_shapes = {}
    for port in ov_model.inputs:
        axes = model.dynamic_axes.get(_port_name(port, model.input_names), {})
        shape = port.get_partial_shape()
        static = [axis for axis in axes if axis < shape.rank.get_length() and shape[axis].is_static]
        if static:
            for axis in static:
                shape[axis] = -1
            new_shapes[port] = shape
    if new_shapes:
        ov_model.reshape(new_shapes)


class OpenVinoBackend:
    """OpenVINO Runtime on the CPU device."""

    name = "openvino"
    saves_code = False  # OpenVINO IR: data, loaded by default
    file_options = ("xml", "bin")  # load options that name one of the saved files
    capabilities = (
        Capability(_CPU, Precision.FP32, sources=_SOURCES),
        Capability(_CPU, Precision.BF16, requires_any=_BF16_FEATURES, sources=_SOURCES),
        Capability(_CPU, Precision.INT8, "static", sources=_SOURCES),
        # Accuracy-aware int8 (NNCF: SmoothQuant, sensitive MatMuls kept in float, bf16).
        Capability(_CPU, Precision.INT8, NNCF_TECHNIQUE, sources=_SOURCES),
    )
    knobs: tuple[Knob, ...] = (
        # Serving under load (throughput, cost), the THROUGHPUT hint is tried first.
        Knob(
            "performance_hint",
            ("LATENCY", "THROUGHPUT"),
            devices=frozenset({_CPU}),
            serving=("THROUGHPUT", "LATENCY"),
        ),
        Knob("num_streams", (0, 1, 2), devices=frozenset({_CPU}), serving=(0, 1, 2)),  # 0: hint's
        Knob("inference_num_threads", (0, 1, 2, 4), devices=frozenset({_CPU})),  # 0: all cores
        Knob(
            "per_channel",
            (False, True),
            devices=frozenset({_CPU}),
            precisions=frozenset({Precision.INT8}),
            techniques=frozenset({"static"}),
        ),
        *static_int8_knobs(frozenset({_CPU})),
        *nncf_knobs(frozenset({_CPU})),
    )

    def unavailable_reason(self, device: DeviceKind) -> str | None:
        if device is not _CPU:
            return "the openvino backend runs on the CPU device only"
        return _probe()

    def build(
        self, model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig, workdir: Path
    ) -> OpenVinoCompiled:
        if config.device is not _CPU or config.precision not in _PRECISION_HINTS:
            raise UnsupportedCandidate(
                f"openvino does not build {config.precision.value} on {config.device.value}"
            )
        reason = _probe()
        if reason is not None:
            raise UnsupportedCandidate(reason)
        properties = compile_properties(config.precision, config.knobs)
        if config.precision is Precision.INT8 and config.technique == NNCF_TECHNIQUE:
            properties["INFERENCE_PRECISION_HINT"] = _int8_float_hint(config)
        ov_model, float_layers = _read_model(model, calibration, config, workdir)
        compiled = OpenVinoCompiled(ov_model, properties, model.input_names, model.output_names)
        compiled.float_layers = tuple(float_layers)
        if config.precision is Precision.INT8:
            note = calibration_note(calibration)
            compiled.notes = (note,) if note else ()
        _require_precision(compiled, config.precision)
        return compiled

    def load(
        self, directory: Path, options: Mapping[str, Any], device: DeviceKind
    ) -> OpenVinoCompiled:
        reason = self.unavailable_reason(device)
        if reason is not None:  # e.g. a learner with an OpenVINO winner, openvino missing here
            raise UnsupportedCandidate(reason)
        ov_model = _core().read_model(
            str(directory / options["xml"]), str(directory / options["bin"])
        )
        return OpenVinoCompiled(
            ov_model,
            _checked_properties(options.get("properties")),
            _names(options.get("input_names")),
            _names(options.get("output_names")),
        )


# Saved compile properties are untrusted: only these keys, with values of these forms.
_SAVED_PROPERTIES: dict[str, tuple[str, ...] | None] = {
    "INFERENCE_PRECISION_HINT": ("f32", "bf16", "f16"),
    "PERFORMANCE_HINT": ("LATENCY", "THROUGHPUT"),
    "NUM_STREAMS": None,  # a positive integer
    "INFERENCE_NUM_THREADS": None,
}


def _checked_properties(properties: Any) -> dict[str, str]:
    if not isinstance(properties, dict):
        raise UnsupportedCandidate("the saved OpenVINO properties are not a mapping")
    for key, value in properties.items():
        allowed = _SAVED_PROPERTIES.get(key, ())
        valid = value in allowed if allowed is not None else str(value).isdigit()
        if key not in _SAVED_PROPERTIES or not isinstance(value, str) or not valid:
            raise UnsupportedCandidate(f"OpenVINO property {key}={value!r} is not allowed")
    return dict(properties)


def _names(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UnsupportedCandidate("the saved input/output names are not a list of strings")
    return value


def _require_precision(compiled: OpenVinoCompiled, precision: Precision) -> None:
    """A bf16 candidate that OpenVINO compiled as f32 (CPU without bf16) is not bf16:
    refuse it rather than record f32 speed under the bf16 label."""
    if precision is Precision.BF16 and compiled.inference_precision != "bf16":
        raise UnsupportedCandidate(
            "OpenVINO ignored the bf16 precision hint (this CPU has no native bf16; "
            f"it compiled for {compiled.inference_precision})"
        )


BACKEND = OpenVinoBackend()
