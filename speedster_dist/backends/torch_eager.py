"""PyTorch eager: the baseline every candidate is compared with.

Saved as TorchScript (a standard, non-pickled format) so that a learner whose winner is the
original model can still be written to disk and loaded in a fresh process.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from speedster_dist.backends._protocol import (
    BuildConfig,
    Capability,
    Knob,
    SourceModel,
    Tensors,
)
from speedster_dist.backends._torch_common import (
    NUM_THREADS_KNOB,
    TorchCompiled,
    TorchScriptFiles,
    build_dtype,
    require_module,
    save_portable,
    torch_device,
)
from speedster_dist.records import DeviceKind, Precision

__all__ = ["BACKEND", "TorchEagerBackend"]


class _EagerCompiled(TorchCompiled):
    """Eager module; its TorchScript form is made only when it is saved."""

    def __init__(
        self,
        module: Any,
        device: DeviceKind,
        example: Tensors,
        dtype: torch.dtype | None = None,
        tf32: bool = False,
        threads: int = 0,
    ) -> None:
        super().__init__(module, device, dtype=dtype, tf32=tf32, threads=threads)
        self._module = module
        self._example = example

    def save(self, directory: Path) -> dict[str, Any]:
        if self._portable is None:
            self._portable = save_portable(self._module, self._example)
        return super().save(directory)


class TorchEagerBackend(TorchScriptFiles):
    """The original module as it is (moved and cast on GPUs): the baseline."""

    name = "torch"
    capabilities = (
        Capability(DeviceKind.CPU, Precision.FP32),
        Capability(DeviceKind.GPU, Precision.FP32),
        # The original model on CUDA in reduced precision: no compiler, often the first win.
        Capability(DeviceKind.GPU, Precision.TF32),
        Capability(DeviceKind.GPU, Precision.FP16),
        Capability(DeviceKind.GPU, Precision.BF16),
    )
    knobs: tuple[Knob, ...] = ()
    throughput_knobs = (NUM_THREADS_KNOB,)

    def build(
        self, model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig, workdir: Path
    ) -> TorchCompiled:
        module = require_module(model)
        dtype = build_dtype(self.name, config)
        reduced = dtype is not torch.float32
        device = torch_device(config.device)
        if config.device is DeviceKind.GPU:
            # Copy before moving or casting: the source module is shared with other trials.
            module = copy.deepcopy(module).to(device=device, dtype=dtype)
        example = tuple(
            t.to(device, dtype) if reduced and t.is_floating_point() else t.to(device)
            for t in model.example_inputs
        )
        tf32 = config.precision is Precision.TF32
        threads = int(config.knobs.get("num_threads", 0))
        return _EagerCompiled(
            module.eval(), config.device, example, dtype if reduced else None, tf32, threads
        )


BACKEND = TorchEagerBackend()
