"""torch.compile with the inductor backend (C++/OpenMP kernels on CPU, Triton on CUDA).

The module is first captured with ``torch.export`` (the portable form that ``save`` writes),
then the exported module is compiled, so what is timed is what a reload recompiles. The price:
a model that ``torch.export`` cannot capture (data-dependent control flow) is refused here,
even though ``torch.compile`` alone could run it with graph breaks. ``build`` calls it on
the example inputs (and a few other shapes) so that compilation is part of the build, not of
the first timed call.

A compiled module cannot be saved portably: ``save`` writes the ``torch.export`` archive and
load options saying it must be recompiled, and ``load`` recompiles it with the same mode.
**The first calls after loading are slow** (they compile, as the build did).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from speedster_dist.backends._protocol import (
    BuildConfig,
    Capability,
    Knob,
    SourceModel,
    Tensors,
    UnsupportedCandidate,
)
from speedster_dist.backends._runners import ThreadRunner
from speedster_dist.backends._torch_common import (
    TorchCompiled,
    build_dtype,
    cuda_unavailable,
    require_module,
    saved_dtype,
    set_tf32,
    torch_device,
)
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.serving import Overlap, Runner

__all__ = ["BACKEND", "TorchCompileBackend", "check_export_archive"]

_ARCHIVE = "model.pt2"
# CPU: no CUDA graphs to capture. GPU: "reduce-overhead" replays the model as CUDA graphs
# (launch overhead gone: the win at batch 1), "max-autotune" also benchmarks Triton kernels.
# On GPUs CUDA graphs come first: the default a constrained search tries, since launch
# overhead dominates inference at small batches; max-autotune compiles for minutes.
_CPU_MODES = ("default", "max-autotune-no-cudagraphs")
_GPU_MODES = ("reduce-overhead", "default", "max-autotune")
_CUDA_GRAPH_MODES = frozenset({"reduce-overhead", "max-autotune"})
_MODES = (*_CPU_MODES, *_GPU_MODES[1:])
_SAVED_FLAGS = (("mode", "default"), ("tf32", False), ("dynamic", False))
_MAX_WARMUP_SHAPES = 4  # compiles happen per new shape kind; a few distinct shapes suffice
_ONE_GRAPH_AT_A_TIME = Overlap(
    "serial", overlaps=False, note="CUDA graphs replay one at a time (shared output buffers)"
)


class _InductorCompiled(TorchCompiled):
    """A compiled exported module; ``save`` writes the exported program for recompiling."""

    def __init__(
        self,
        program: Any,
        device: DeviceKind,
        dtype: torch.dtype | None,
        mode: str,
        dynamic: bool,
        tf32: bool = False,
    ) -> None:
        if device is DeviceKind.GPU:
            set_tf32(tf32)  # inductor picks its matmul kernels by it when compiling
        compiled = compile_module(program.module(), mode, dynamic)
        super().__init__(compiled, device, dtype=dtype, tf32=tf32)
        self._program = program
        self._mode = mode
        self._dynamic = dynamic
        self._cuda_graphs = uses_cuda_graphs(device, mode)

    def __call__(self, *inputs: torch.Tensor) -> Tensors:
        if not self._cuda_graphs:
            return super().__call__(*inputs)
        # A CUDA graph writes every replay's outputs into the same buffers: without a copy the
        # caller's previous outputs (and the accuracy check's) would change under them.
        torch.compiler.cudagraph_mark_step_begin()
        return tuple(t.clone() for t in super().__call__(*inputs))

    def runner(self, concurrency: int) -> Runner:
        """CUDA-graph replays share their output buffers and mark steps per process: they
        run one at a time. Otherwise as every torch candidate (streams or threads)."""
        if self._cuda_graphs:
            return ThreadRunner(self, 1, _ONE_GRAPH_AT_A_TIME)
        return super().runner(concurrency)

    def save(self, directory: Path) -> dict[str, Any]:
        path = directory / _ARCHIVE
        # The example inputs would be stored as a pickle: leave them out (see check_export_archive).
        self._program.example_inputs = None
        torch.export.save(self._program, str(path))
        dtype = str(self._dtype).removeprefix("torch.") if self._dtype is not None else ""
        return {
            "file": path.name,
            "format": "torch.export",
            "recompile": "torch_compile",  # not runnable as is: load compiles it again
            "mode": self._mode,
            "tf32": self._tf32,
            "dynamic": self._dynamic,
            "dtype": dtype,
        }


def uses_cuda_graphs(device: DeviceKind, mode: str) -> bool:
    """Whether inductor replays this candidate as CUDA graphs (GPU modes that capture them)."""
    return device is DeviceKind.GPU and mode in _CUDA_GRAPH_MODES


def compile_module(module: torch.nn.Module, mode: str, dynamic: bool) -> Any:
    """``torch.compile`` with inductor; compilation itself happens at the first call.

    ``dynamic=True`` makes every input size symbolic from the first compile (sizes 0 and 1
    are still specialized, so a size-2 call is needed to get the symbolic graph).
    ``dynamic=False`` keeps static shapes: no input has a varying axis.
    """
    return torch.compile(module, backend="inductor", mode=mode, dynamic=dynamic)


def _dynamic_dims(model: SourceModel) -> list[dict[int, str]]:
    return [model.dynamic_axes.get(name, {}) for name in model.input_names]


def _widened_example(model: SourceModel) -> Tensors:
    """The example with every dynamic axis of size 1 doubled (repeating real values).

    Export and dynamo specialize axes whose example size is 0 or 1; a size-2 sample makes
    them symbolic. Only size-1 axes are widened so no size can pass a model limit
    (e.g. BERT's maximum sequence length).
    """
    widened = []
    for tensor, axes in zip(model.example_inputs, _dynamic_dims(model), strict=True):
        for axis in axes:
            if tensor.shape[axis] == 1:
                tensor = torch.cat([tensor, tensor], dim=axis)
        widened.append(tensor)
    return tuple(widened)


def export_module(module: torch.nn.Module, model: SourceModel, sample: Tensors) -> Any:
    """``torch.export`` the flat module with the source model's dynamic axes."""
    dim = torch.export.Dim.DYNAMIC
    shapes = tuple({axis: dim for axis in axes} or None for axes in _dynamic_dims(model))
    try:
        with torch.no_grad():
            # The flat module takes ``*tensors``: its dynamic shapes nest one level down.
            return torch.export.export(module, sample, dynamic_shapes=(shapes,), strict=False)
    except Exception as err:  # export failures are about the model (control flow, shapes)
        raise UnsupportedCandidate(f"torch.export failed (needed to save): {err}") from err


def _warmup_samples(model: SourceModel, calibration: Sequence[Tensors]) -> list[Tensors]:
    """Example, widened example and calibration samples: one per distinct set of shapes."""
    seen: set[tuple[tuple[int, ...], ...]] = set()
    samples: list[Tensors] = []
    for sample in (model.example_inputs, _widened_example(model), *calibration):
        key = tuple(tuple(t.shape) for t in sample)
        if key not in seen and len(samples) < _MAX_WARMUP_SHAPES:
            seen.add(key)
            samples.append(sample)
    return samples


def _prepare(model: SourceModel, config: BuildConfig) -> tuple[torch.nn.Module, torch.dtype]:
    dtype = build_dtype("torch_compile", config)
    module = require_module(model)
    if config.device is DeviceKind.CPU and dtype is torch.float32:
        return module.eval(), dtype
    # Copy before moving or casting: the source module is shared with the eager baseline.
    device = torch_device(config.device)
    return copy.deepcopy(module).to(device=device, dtype=dtype).eval(), dtype


def _to_device(sample: Tensors, device: torch.device, dtype: torch.dtype) -> Tensors:
    moved = (t.to(device) for t in sample)
    return tuple(t.to(dtype) if t.is_floating_point() else t for t in moved)


# Every member an archive written by ``save`` holds; anything else (a legacy pickled weights
# file, custom objects, compiled code) is refused before ``torch.export.load`` sees it.
_ARCHIVE_MEMBERS = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/\w+\.json"
    r"|data/(weights|constants)/(weight|tensor)_\d+"
    r"|data/(weights|constants)/\w+_config\.json"
    r"|data/sample_inputs/\w+\.pt)"
)


def check_export_archive(path: Path) -> None:
    """Refuse an export archive that could make ``torch.export.load`` unpickle something.

    ``torch.export.load`` unpickles tensor-subclass weights, custom/opaque objects, legacy
    weight files and the sample inputs (falling back to ``weights_only=False``). Every member
    must be one of the plain kinds ``save`` writes (an allow-list, not a deny-list), the
    sample inputs empty, and every weight a plain tensor.
    """
    with zipfile.ZipFile(path) as archive:
        prefixes = {info.filename.split("/", 1)[0] for info in archive.infolist()}
        if len(prefixes) != 1:
            raise UnsupportedCandidate(f"{path.name}: members under several roots {prefixes}")
        for info in archive.infolist():
            name = info.filename.split("/", 1)[1] if "/" in info.filename else ""
            if not _ARCHIVE_MEMBERS.fullmatch(name):
                raise UnsupportedCandidate(f"{path.name}: unexpected member {info.filename!r}")
            if name.startswith("data/sample_inputs/") and info.file_size:
                raise UnsupportedCandidate(f"{path.name}: pickled sample inputs ({name})")
            if name.startswith("data/") and name.endswith("_config.json"):
                _check_payload_config(path.name, name, json.loads(archive.read(info)))


def _check_payload_config(archive: str, name: str, config: Mapping[str, Any]) -> None:
    for fqn, meta in config.get("config", {}).items():
        plain = str(meta.get("path_name", "")).startswith(("weight_", "tensor_"))
        if meta.get("use_pickle", True) or not plain:
            raise UnsupportedCandidate(f"{archive}: {fqn} in {name} is not a plain tensor")


class TorchCompileBackend:
    """``torch.compile(backend="inductor")`` over the ``torch.export``-ed module."""

    name = "torch_compile"
    # What ``save`` writes is a program: loading it needs ``trust_code=True``.
    saves_code = True
    file_options = ("file",)  # load options that name one of the saved files
    capabilities = (
        Capability(DeviceKind.CPU, Precision.FP32),
        Capability(DeviceKind.GPU, Precision.FP32),
        Capability(DeviceKind.GPU, Precision.TF32),
        Capability(DeviceKind.GPU, Precision.FP16),
        Capability(DeviceKind.GPU, Precision.BF16),
    )
    knobs: tuple[Knob, ...] = (
        Knob("mode", _CPU_MODES, devices=frozenset({DeviceKind.CPU})),
        Knob("mode", _GPU_MODES, devices=frozenset({DeviceKind.GPU})),
    )

    def unavailable_reason(self, device: DeviceKind) -> str | None:
        if device is DeviceKind.GPU:
            no_cuda = cuda_unavailable(device)
            if no_cuda is not None:
                return no_cuda
            if importlib.util.find_spec("triton") is None:
                return "inductor needs triton for CUDA kernels; it is not installed"
            return None
        # Inductor writes C++ and compiles it: without a compiler every build fails.
        compilers = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
        if not any(c and shutil.which(c) for c in compilers):
            return "inductor needs a C++ compiler (g++, c++, clang++ or $CXX); none found"
        return None

    def build(
        self, model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig, workdir: Path
    ) -> _InductorCompiled:
        module, dtype = _prepare(model, config)
        device = torch_device(config.device)
        program = export_module(module, model, _to_device(_widened_example(model), device, dtype))
        mode = str(config.knobs.get("mode", "default"))
        call_dtype = None if dtype is torch.float32 else dtype
        tf32 = config.precision is Precision.TF32
        compiled = _InductorCompiled(
            program, config.device, call_dtype, mode, bool(model.dynamic_axes), tf32
        )
        for sample in _warmup_samples(model, calibration):
            compiled(*sample)  # compiles now, so the build pays for it, not the first timed call
        return compiled

    def load(
        self, directory: Path, options: Mapping[str, Any], device: DeviceKind
    ) -> _InductorCompiled:
        """Recompile the saved exported program (compilation happens at the first calls)."""
        if options.get("format") != "torch.export":
            raise UnsupportedCandidate(
                f"torch_compile cannot load format {options.get('format')!r}"
            )
        path = directory / str(options["file"])
        check_export_archive(path)
        program = torch.export.load(str(path))
        dtype = saved_dtype(options)
        mode, tf32, dynamic = (options.get(k, d) for k, d in _SAVED_FLAGS)
        if mode not in _MODES or not isinstance(tf32, bool) or not isinstance(dynamic, bool):
            raise UnsupportedCandidate(f"unknown torch.compile options {dict(options)!r:.200}")
        return _InductorCompiled(program, device, dtype, mode, dynamic, tf32)


BACKEND = TorchCompileBackend()
