"""ONNX Runtime generator: a decoder graph with past key values in and out, driven by IO binding.

The cache never goes back to numpy between steps: each step binds the previous step's
``present.*`` OrtValues as its ``past.*`` inputs and lets ORT allocate the new ones (CPU here;
``providers=["CUDAExecutionProvider"]`` keeps them on the GPU, the ``gpu``-marked path).
Precisions: ``fp32``, and weight-only ``int8`` / ``int4`` (MatMulNBits, see :mod:`._nbits`) with
the ``accuracy_level`` knob.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speedster_dist.backends.generate import _greedy
from speedster_dist.backends.generate._decoder_graph import (
    ATTENTION_MASK,
    INPUT_IDS,
    POSITION_IDS,
    DecoderGraph,
    export_decoder,
)

PRECISIONS = ("fp32", "int8", "int4")


@dataclass(frozen=True)
class OrtGenerateSettings:
    """The knobs of an ORT generator."""

    precision: str = "fp32"
    accuracy_level: int = 0
    block_size: int = 32
    threads: int | None = None
    providers: tuple[str, ...] = ("CPUExecutionProvider",)


class OrtPastGenerator:
    """``generate(input_ids, attention_mask, max_new_tokens, **sampling) -> LongTensor``."""

    def __init__(self, graph: DecoderGraph, config: Any, settings: OrtGenerateSettings) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if settings.threads:
            options.intra_op_num_threads = settings.threads
        self.graph = graph
        self.config = config
        self.settings = settings
        self.session = ort.InferenceSession(
            str(graph.path), options, providers=list(settings.providers)
        )
        self._device = "cuda" if "CUDAExecutionProvider" in settings.providers else "cpu"
        self._past: list[Any] = []

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        **sampling: Any,
    ) -> torch.Tensor:
        """Greedy (or sampled) generation with the cache kept in ORT values."""
        self._past = []
        try:
            return _greedy.decode(
                self._step, input_ids, attention_mask, max_new_tokens, self.config, **sampling
            )
        finally:
            self._past = []

    def _step(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        binding = self.session.io_binding()
        binding.bind_cpu_input(INPUT_IDS, np.ascontiguousarray(ids.numpy(), dtype=np.int64))
        binding.bind_cpu_input(ATTENTION_MASK, np.ascontiguousarray(mask.numpy(), dtype=np.int64))
        binding.bind_cpu_input(
            POSITION_IDS, np.ascontiguousarray(positions.numpy(), dtype=np.int64)
        )
        if self._past:
            for name, value in zip(self.graph.past_names(), self._past, strict=True):
                binding.bind_ortvalue_input(name, value)
        else:
            empty = np.zeros(
                (ids.shape[0], self.graph.num_kv_heads, 0, self.graph.head_dim), np.float32
            )
            for name in self.graph.past_names():
                binding.bind_cpu_input(name, empty)
        for name in [o.name for o in self.session.get_outputs()]:
            binding.bind_output(name, self._device)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        self._past = list(outputs[1:])
        return torch.from_numpy(outputs[0].numpy()[:, -1, :].copy())


def build_ort_generator(
    model: torch.nn.Module, folder: Path, settings: OrtGenerateSettings | None = None
) -> OrtPastGenerator:
    """Export ``model`` into ``folder``, compress its weights if asked, and open a session."""
    settings = settings or OrtGenerateSettings()
    if settings.precision not in PRECISIONS:
        raise ValueError(
            f"ORT generation precision must be one of {PRECISIONS}, not {settings.precision!r}"
        )
    folder = Path(folder)
    graph = export_decoder(model, folder / "decoder_fp32.onnx")
    if settings.precision != "fp32":
        from speedster_dist.backends.generate._nbits import compress_weights

        target = folder / f"decoder_{settings.precision}.onnx"
        compress_weights(
            graph.path, target, settings.precision, settings.accuracy_level, settings.block_size
        )
        graph = DecoderGraph(target, graph.num_layers, graph.num_kv_heads, graph.head_dim)
    return OrtPastGenerator(graph, model.config, settings)
