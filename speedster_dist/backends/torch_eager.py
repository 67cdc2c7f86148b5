"""PyTorch eager: the baseline every candidate is compared with.

Saved as TorchScript (a standard, non-pickled format) so that a learner whose winner is the
original model can still be written to disk and loaded in a fresh process.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from speedster_dist.backends._protocol import (
    BuildConfig,
    Capability,
    Knob,
    SourceModel,
    Tensors,
)
from speedster_dist.backends._torch_common import (
    TorchCompiled,
    load_torchscript,
    require_module,
    save_portable,
    torch_device,
)
from speedster_dist.records import DeviceKind, Precision

__all__ = ["BACKEND", "TorchEagerBackend"]


class _EagerCompiled(TorchCompiled):
    """Eager module; its TorchScript form is made only when it is saved."""

    def __init__(self, module: Any, device: DeviceKind, example: Tensors) -> None:
        super().__init__(module, device)
        self._module = module
        self._example = example

    def save(self, directory: Path) -> dict[str, Any]:
        if self._portable is None:
            self._portable = save_portable(self._module, self._example)
        return super().save(directory)


class TorchEagerBackend:
    name = "torch"
    # What ``save`` writes is a program: loading it needs ``trust_code=True``.
    saves_code = True
    file_options = ("file",)  # load options that name one of the saved files
    capabilities = (
        Capability(DeviceKind.CPU, Precision.FP32),
        Capability(DeviceKind.GPU, Precision.FP32),
    )
    knobs: tuple[Knob, ...] = ()

    def unavailable_reason(self, device: DeviceKind) -> str | None:
        import torch

        if device is DeviceKind.GPU and not torch.cuda.is_available():
            return "no CUDA device visible to torch"
        return None

    def build(
        self, model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig, workdir: Path
    ) -> TorchCompiled:
        module = require_module(model)
        if config.device is DeviceKind.GPU:
            module = copy.deepcopy(module).to(torch_device(config.device))
        example = tuple(t.to(torch_device(config.device)) for t in model.example_inputs)
        return _EagerCompiled(module.eval(), config.device, example)

    def load(
        self, directory: Path, options: Mapping[str, Any], device: DeviceKind
    ) -> TorchCompiled:
        return load_torchscript(directory, options, device)


BACKEND = TorchEagerBackend()
