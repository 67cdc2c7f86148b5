"""ONNX export of a Hugging Face causal LM with its past key values as inputs and outputs.

optimum's exporters are not used: optimum / optimum-intel are not installed here and, per the
lead's check, pin transformers versions the constraints exclude (transformers 5.x here), so this
small exporter of our own wraps
the model so that the cache travels as flat tensors (``past.<i>.key`` / ``past.<i>.value`` in,
``present.<i>.key`` / ``present.<i>.value`` out) and traces it with the TorchScript exporter with
dynamic batch, sequence and past axes. A zero-length past makes the same graph run the prefill.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
POSITION_IDS = "position_ids"
LOGITS = "logits"


@dataclass(frozen=True)
class DecoderGraph:
    """Where a decoder graph lies and the cache layout its inputs expect."""

    path: Path
    num_layers: int
    num_kv_heads: int
    head_dim: int

    def past_names(self) -> list[str]:
        """The past-cache input names, layer by layer, key then value."""
        return [f"past.{i}.{kind}" for i in range(self.num_layers) for kind in ("key", "value")]

    def present_names(self) -> list[str]:
        """The updated-cache output names, in the order of :meth:`past_names`."""
        return [f"present.{i}.{kind}" for i in range(self.num_layers) for kind in ("key", "value")]


def cache_layout(config: Any) -> tuple[int, int, int]:
    """(layers, kv heads, head dim) read from a Hugging Face config."""
    layers = _first(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(config, "num_attention_heads", "n_head", "num_heads")
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    return layers, int(kv_heads), int(head_dim)


def _first(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"config has none of {names}")


class _FlatCacheLM(torch.nn.Module):
    """The causal LM with its cache as flat tensors (what the exported graph computes)."""

    def __init__(self, model: torch.nn.Module, num_layers: int) -> None:
        super().__init__()
        self.model = model
        self.num_layers = num_layers

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        *past: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache

        cache = DynamicCache()
        for layer in range(self.num_layers):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        )
        flat: list[torch.Tensor] = []
        for layer in out.past_key_values.layers[: self.num_layers]:
            flat += [layer.keys, layer.values]
        return (out.logits, *flat)


def export_decoder(model: torch.nn.Module, path: Path, opset: int = 17) -> DecoderGraph:
    """Export ``model`` (a causal LM, fp32, CPU) to ``path`` with past key values in and out."""
    layers, kv_heads, head_dim = cache_layout(model.config)
    graph = DecoderGraph(Path(path), layers, kv_heads, head_dim)
    wrapper = _FlatCacheLM(model, layers).eval()
    batch, seq, past_len = 1, 3, 2
    past = [torch.zeros(batch, kv_heads, past_len, head_dim) for _ in range(2 * layers)]
    ids = torch.ones(batch, seq, dtype=torch.long)
    mask = torch.ones(batch, seq + past_len, dtype=torch.long)
    positions = torch.arange(past_len, past_len + seq).unsqueeze(0)
    axes: dict[str, dict[int, str]] = {
        INPUT_IDS: {0: "batch", 1: "seq"},
        ATTENTION_MASK: {0: "batch", 1: "total"},
        POSITION_IDS: {0: "batch", 1: "seq"},
        LOGITS: {0: "batch", 1: "seq"},
    }
    axes.update({name: {0: "batch", 2: "past"} for name in graph.past_names()})
    axes.update({name: {0: "batch", 2: "total"} for name in graph.present_names()})
    graph.path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (ids, mask, positions, *past),
            str(graph.path),
            input_names=[INPUT_IDS, ATTENTION_MASK, POSITION_IDS, *graph.past_names()],
            output_names=[LOGITS, *graph.present_names()],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    model.train(was_training)
    return graph
