"""An ONNX Runtime session as a compiled candidate: providers, their checks, IO binding.

What the session was asked to run on is what it must run on: ONNX Runtime falls back from
TensorRT to CUDA to the CPU without an error, so the active providers are checked after the
session is made, and a candidate whose provider is not active is refused (it would otherwise
be measured on another device under its label). On a GPU "fp32" means TF32 off (the CUDA EP's
``use_tf32`` option); a "tf32" candidate turns it on. Timing uses IO binding with the outputs
left on the device, as the torch and TensorRT backends leave theirs.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speedster_dist.backends._onnx import copy_onnx, feeds
from speedster_dist.backends._protocol import Tensors, UnsupportedCandidate
from speedster_dist.backends._runners import ThreadRunner
from speedster_dist.records import DeviceKind
from speedster_dist.serving import Overlap, Runner

__all__ = ["CPU_EP", "CUDA_EP", "TRT_CACHE", "TRT_EP_NAME", "OrtCompiled", "Runtime"]

CPU_EP, CUDA_EP, TRT_EP_NAME = (
    "CPUExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
)
TRT_CACHE = "trt_cache"
_CPU_THREADS = Overlap(
    "threads",
    overlaps=True,
    note="session.run releases the GIL; each call also uses intra_op_threads threads",
)
_GPU_THREADS = Overlap(
    "threads",
    overlaps=False,
    note="the CUDA provider runs a session's calls on its one compute stream",
)
# "name:1x128,other:1x128": TensorRT EP optimization-profile shapes (saved, so untrusted).
_PROFILE = re.compile(r"^([\w.:/-]+:\d+(x\d+)*)(,[\w.:/-]+:\d+(x\d+)*)*$")


@dataclass(frozen=True)
class Runtime:
    """How a session runs: execution providers, precision switches, threads, and the
    TensorRT EP's optimization profile (min/opt/max shapes). Round-trips through JSON."""

    device: DeviceKind
    tensorrt: bool = False
    trt_fp16: bool = False
    tf32: bool = False
    intra_op_threads: int = 0  # 0 = ONNX Runtime's default (one per physical core)
    # 0: sequential execution (ONNX Runtime's default); n > 0: independent graph branches run
    # in parallel on n inter-op threads (ExecutionMode.ORT_PARALLEL).
    inter_op_threads: int = 0
    trt_profile: tuple[str, str, str] | None = None

    def providers(self, cache_dir: Path) -> list[Any]:
        if self.device is DeviceKind.CPU:
            return [CPU_EP]
        gpu: list[Any] = [(CUDA_EP, {"use_tf32": int(self.tf32)}), CPU_EP]
        if not self.tensorrt:
            return gpu
        # Engines are built for the profile's shape ranges (not once per new shape) and
        # cached next to the model, and saved with it: a reload does not rebuild them.
        trt: dict[str, Any] = {
            "trt_fp16_enable": self.trt_fp16,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir),
        }
        if self.trt_profile is not None:
            low, opt, high = self.trt_profile
            trt.update(
                trt_profile_min_shapes=low,
                trt_profile_opt_shapes=opt,
                trt_profile_max_shapes=high,
            )
        return [(TRT_EP_NAME, trt), *gpu]

    @property
    def requested(self) -> str:
        """The provider the candidate is about: it must be active in the session."""
        if self.device is DeviceKind.CPU:
            return CPU_EP
        return TRT_EP_NAME if self.tensorrt else CUDA_EP

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device.value,
            "tensorrt": self.tensorrt,
            "trt_fp16": self.trt_fp16,
            "tf32": self.tf32,
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "trt_profile": list(self.trt_profile) if self.trt_profile else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], device: DeviceKind) -> Runtime:
        """From saved (untrusted) load options: flags must be booleans, threads 0..1024,
        profile shapes of the form ``name:1x128,...``."""
        threads = data.get("intra_op_threads", 0)
        inter = data.get("inter_op_threads", 0)
        flags = [data.get(k, False) for k in ("tensorrt", "trt_fp16", "tf32")]
        profile = data.get("trt_profile")
        valid_profile = profile is None or (
            isinstance(profile, list)
            and len(profile) == 3
            and all(isinstance(p, str) and _PROFILE.match(p) for p in profile)
        )
        if (
            not all(isinstance(f, bool) for f in flags)
            or not valid_profile
            or not all(_thread_count(n) for n in (threads, inter))
        ):
            raise UnsupportedCandidate("the saved onnxruntime options are not valid")
        shapes: tuple[str, str, str] | None = (
            (profile[0], profile[1], profile[2]) if profile else None
        )
        return cls(
            device,
            tensorrt=flags[0],
            trt_fp16=flags[1],
            tf32=flags[2],
            intra_op_threads=threads,
            inter_op_threads=inter,
            trt_profile=shapes,
        )


def _thread_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1024


def check_providers(active: Sequence[str], runtime: Runtime) -> None:
    """Refuse a session that does not run on the provider its candidate names."""
    if runtime.requested not in active:
        raise UnsupportedCandidate(
            f"requested {runtime.requested}, but ONNX Runtime made a session on {list(active)} "
            "(it falls back silently: its library, CUDA or TensorRT is missing or refused the "
            "model); measuring it would time another device under this label"
        )


def _session(path: Path, runtime: Runtime, cache_dir: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = runtime.intra_op_threads
    if runtime.inter_op_threads > 0:
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        options.inter_op_num_threads = runtime.inter_op_threads
    options.log_severity_level = 3  # errors only: fp16/quantized graphs warn a lot, harmlessly
    if runtime.tensorrt:
        cache_dir.mkdir(parents=True, exist_ok=True)
    session = ort.InferenceSession(str(path), options, providers=runtime.providers(cache_dir))
    check_providers(session.get_providers(), runtime)
    return session


class OrtCompiled:
    """An InferenceSession called like the flat module: tensors in, tuple of tensors out."""

    notes: tuple[str, ...] = ()  # for the summary (e.g. few distinct calibration samples)

    def __init__(
        self,
        path: Path,
        runtime: Runtime,
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
        self._device_type = "cuda" if runtime.device is DeviceKind.GPU else "cpu"

    def __call__(self, *inputs: torch.Tensor) -> Tensors:
        if self._runtime.device is DeviceKind.CPU:
            outputs = self._session.run(
                self._output_names, feeds(self._input_names, inputs, self._graph_inputs)
            )
        else:
            outputs = self.run_on_device(*inputs).copy_outputs_to_cpu()
        return tuple(_to_torch(o) for o in outputs)

    def run_on_device(self, *inputs: torch.Tensor) -> Any:
        """One call whose outputs stay where the session computed them (what is timed):
        host inputs are copied in, as the torch backends copy theirs; returns the binding."""
        binding = self._session.io_binding()
        for name, array in feeds(self._input_names, inputs, self._graph_inputs).items():
            binding.bind_cpu_input(name, array)
        for name in self._output_names:
            binding.bind_output(name, self._device_type)
        self._session.run_with_iobinding(binding)
        return binding

    def runner(self, concurrency: int) -> Runner:
        """Requests in flight on threads that call this one session (ONNX Runtime sessions
        are safe to run from several threads, and ``run`` releases the GIL).

        Not ``run_async``: it runs each call on a thread of the session's intra-op pool (and
        refuses ``intra_op_threads=1``), taking the threads each call parallelizes over.
        """
        if self._runtime.device is DeviceKind.CPU:
            return ThreadRunner(self, concurrency, _CPU_THREADS)
        return ThreadRunner(self.run_on_device, concurrency, _GPU_THREADS)

    def save(self, directory: Path) -> dict[str, Any]:
        name = "model.onnx"
        copy_onnx(self._path, directory / name)
        if self._cache_dir.is_dir():  # TensorRT engines built so far travel with the model
            shutil.copytree(self._cache_dir, directory / TRT_CACHE, dirs_exist_ok=True)
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
