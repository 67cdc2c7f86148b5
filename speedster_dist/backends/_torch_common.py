"""Helpers shared by the torch-based backends (eager, TorchScript, torch.compile)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from speedster_dist.backends._protocol import (
    BuildConfig,
    Knob,
    SourceModel,
    Tensors,
    UnsupportedCandidate,
)
from speedster_dist.backends._runners import CudaStreamRunner, ThreadRunner
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.serving import Overlap, Runner

__all__ = [
    "CPU_THREADS",
    "NUM_THREADS_KNOB",
    "PRECISION_DTYPES",
    "TorchCompiled",
    "TorchScriptFiles",
    "as_tuple",
    "build_dtype",
    "cuda_unavailable",
    "require_module",
    "save_portable",
    "set_tf32",
    "torch_device",
]


def set_tf32(enabled: bool) -> None:
    """TF32 tensor-core matmuls and convolutions on or off for this process. "fp32" means
    IEEE fp32: off (torch's cuDNN default is on); "tf32" candidates turn it on."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def torch_device(device: DeviceKind) -> torch.device:
    return torch.device("cuda" if device is DeviceKind.GPU else "cpu")


def require_module(model: SourceModel) -> torch.nn.Module:
    if model.module is None:
        raise UnsupportedCandidate("this backend needs a torch model, not an ONNX file")
    return model.module


def as_tuple(out: Any) -> Tensors:
    if isinstance(out, torch.Tensor):
        return (out,)
    return tuple(out)


class TorchCompiled:
    """A torch callable on one device. Inputs are moved there (and cast to ``dtype``);
    outputs stay there (float32), so that a GPU candidate is timed without a copy back to
    the host: the caller synchronizes the device and moves what it inspects. On a GPU, TF32
    is switched on for ``tf32`` candidates and off for every other one, at each call (the
    switch is per process, and a learner may hold several models). ``threads`` > 0 sets
    torch's intra-op threads on the calling thread at each call, likewise."""

    def __init__(
        self,
        fn: Any,
        device: DeviceKind,
        portable: torch.nn.Module | None = None,
        dtype: torch.dtype | None = None,
        tf32: bool = False,
        threads: int = 0,
    ) -> None:
        self._fn = fn
        self._threads = threads
        self._device = torch_device(device)
        self._dtype = dtype
        self._tf32 = tf32
        # The module written by ``save`` (TorchScript / exported program); may be fn itself.
        self._portable = portable

    def __call__(self, *inputs: torch.Tensor) -> Tensors:
        if self._device.type == "cuda":
            set_tf32(self._tf32)
        if self._threads and torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)  # per thread: a runner's threads each set it
        moved = tuple(self._prepare(t) for t in inputs)
        with torch.inference_mode():
            out = as_tuple(self._fn(*moved))
        return tuple(o.float() if o.is_floating_point() else o for o in out)

    def _prepare(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.to(self._device, non_blocking=True)
        if self._dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(self._dtype)
        return tensor

    def save(self, directory: Path) -> dict[str, Any]:
        if self._portable is None:
            raise UnsupportedCandidate("this candidate has no portable form to save")
        path = directory / "model.torchscript.pt"
        torch.jit.save(self._portable, str(path))
        dtype = str(self._dtype).removeprefix("torch.") if self._dtype is not None else ""
        return {
            "file": path.name,
            "format": "torchscript",
            "dtype": dtype,
            "tf32": self._tf32,
            "num_threads": self._threads,
        }

    def runner(self, concurrency: int) -> Runner:
        """Requests in flight: one CUDA stream each on a GPU; on the CPU, threads, which
        overlap inside torch's kernels (they release the GIL) but not in the Python between
        them (``measure.gil_release`` measures the share)."""
        if self._device.type == "cuda":
            return CudaStreamRunner(self, concurrency)
        return ThreadRunner(self, concurrency, CPU_THREADS)


CPU_THREADS = Overlap(
    "threads",
    overlaps=True,
    note="torch releases the GIL inside its kernels, not in the Python between them; each "
    "call also uses torch's intra-op threads (the num_threads knob)",
)


# The dtypes a saved torch candidate may ask its inputs to be cast to (load options are
# untrusted: never ``getattr(torch, name)``).
SAVED_DTYPES: dict[str, torch.dtype | None] = {
    "": None,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def saved_dtype(options: Mapping[str, Any]) -> torch.dtype | None:
    """The ``dtype`` load option, one of :data:`SAVED_DTYPES`; UnsupportedCandidate otherwise."""
    name = options.get("dtype", "")
    if not isinstance(name, str) or name not in SAVED_DTYPES:
        raise UnsupportedCandidate(f"unknown dtype {name!r} in the load options")
    return SAVED_DTYPES[name]


def load_torchscript(
    directory: Path, options: Mapping[str, Any], device: DeviceKind
) -> TorchCompiled:
    """Load what :meth:`TorchCompiled.save` wrote. A TorchScript archive is a program: the
    artifact loader only calls this with the caller's ``trust_code=True``."""
    module = torch.jit.load(str(directory / options["file"]), map_location=torch_device(device))
    tf32 = options.get("tf32", False)
    if not isinstance(tf32, bool):
        raise UnsupportedCandidate(f"the saved tf32 flag {tf32!r} is not a boolean")
    return TorchCompiled(
        module,
        device,
        portable=module,
        dtype=saved_dtype(options),
        tf32=tf32,
        threads=saved_threads(options),
    )


def saved_threads(options: Mapping[str, Any]) -> int:
    """The ``num_threads`` load option: 0 (torch's default) to 1024."""
    threads = options.get("num_threads", 0)
    if isinstance(threads, bool) or not isinstance(threads, int) or not 0 <= threads <= 1024:
        raise UnsupportedCandidate(f"the saved num_threads {threads!r} is not 0..1024")
    return threads


# Torch's intra-op threads, per call (0: torch's default, one per core). Tuned for throughput:
# with several requests in flight, fewer threads per call keep them from oversubscribing.
NUM_THREADS_KNOB = Knob("num_threads", (0, 1, 2, 4), devices=frozenset({DeviceKind.CPU}))


def trace(module: torch.nn.Module, example: Sequence[torch.Tensor]) -> torch.jit.ScriptModule:
    """TorchScript-trace ``module``; traces are checked against eager by the trial runner."""
    with torch.inference_mode(False), torch.no_grad():
        traced = torch.jit.trace(module, tuple(example), check_trace=False, strict=False)
    return torch.jit.freeze(traced.eval())


def save_portable(
    module: torch.nn.Module, example: Sequence[torch.Tensor]
) -> torch.jit.ScriptModule:
    """A TorchScript form of ``module`` for saving (used by the eager baseline)."""
    return trace(module, example)


PRECISION_DTYPES: dict[Precision, torch.dtype] = {
    Precision.FP32: torch.float32,
    Precision.TF32: torch.float32,  # fp32 storage; the matmuls are TF32
    Precision.FP16: torch.float16,
    Precision.BF16: torch.bfloat16,
}


def build_dtype(backend: str, config: BuildConfig) -> torch.dtype:
    """The dtype ``config`` builds in; reduced precisions run on GPUs only (UnsupportedCandidate
    says so for the others)."""
    dtype = PRECISION_DTYPES.get(config.precision)
    if dtype is None or (config.device is DeviceKind.CPU and config.precision.is_reduced):
        raise UnsupportedCandidate(
            f"{backend} does not build {config.precision.value} on {config.device.value}"
        )
    return dtype


def cuda_unavailable(device: DeviceKind) -> str | None:
    """Why torch cannot run on ``device`` here (None when it can)."""
    if device is DeviceKind.GPU and not torch.cuda.is_available():
        return "no CUDA device visible to torch"
    return None


class TorchScriptFiles:
    """What the backends that save TorchScript files share (the eager baseline, TorchScript):
    their availability and their loading."""

    # What ``save`` writes is a program: loading it needs ``trust_code=True``.
    saves_code = True
    file_options = ("file",)  # load options that name one of the saved files

    def unavailable_reason(self, device: DeviceKind) -> str | None:
        return cuda_unavailable(device)

    def load(
        self, directory: Path, options: Mapping[str, Any], device: DeviceKind
    ) -> TorchCompiled:
        return load_torchscript(directory, options, device)
