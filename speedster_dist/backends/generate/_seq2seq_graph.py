"""ONNX export of an encoder-decoder (T5 family): the encoder graph, run once per input, and a
decoder graph with its self-attention cache as inputs and outputs.

The decoder graph takes the encoder's hidden states each step and recomputes the cross-attention
keys and values from them (two small projections of a short sequence) rather than carrying them
as a second cache: one past per layer pair keeps the graph, the IO binding and OpenVINO's
stateful form the same as the decoder-only one. As in :mod:`._decoder_graph`, optimum is not
used (its pins exclude this project's transformers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from speedster_dist.backends.generate._decoder_graph import LOGITS, DecoderGraph

ENCODER_IDS = "input_ids"
ENCODER_MASK = "attention_mask"
HIDDEN = "encoder_hidden_states"
DECODER_IDS = "decoder_input_ids"
CROSS_MASK = "encoder_attention_mask"


@dataclass(frozen=True)
class Seq2SeqGraphs:
    """The encoder graph and the decoder-with-past graph of one model."""

    encoder: Path
    decoder: DecoderGraph


def seq2seq_layout(config: Any) -> tuple[int, int, int]:
    """(decoder layers, heads, head dim) of a T5-style config."""
    layers = getattr(config, "num_decoder_layers", None) or config.num_layers
    heads = config.num_heads
    head_dim = getattr(config, "d_kv", None) or config.d_model // heads
    return int(layers), int(heads), int(head_dim)


class _Encoder(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.encoder = model.get_encoder()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class _DecoderWithPast(torch.nn.Module):
    def __init__(self, model: Any, num_layers: int) -> None:
        super().__init__()
        self.model = model
        self.num_layers = num_layers

    def forward(
        self,
        decoder_input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        *past: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache, EncoderDecoderCache

        own = DynamicCache()
        for layer in range(self.num_layers):
            own.update(past[2 * layer], past[2 * layer + 1], layer)
        out = self.model(
            encoder_outputs=(encoder_hidden_states,),
            attention_mask=encoder_attention_mask,
            decoder_input_ids=decoder_input_ids,
            past_key_values=EncoderDecoderCache(own, DynamicCache()),
            use_cache=True,
        )
        flat: list[torch.Tensor] = []
        for layer in out.past_key_values.self_attention_cache.layers[: self.num_layers]:
            flat += [layer.keys, layer.values]
        return (out.logits, *flat)


def export_seq2seq(model: torch.nn.Module, folder: Path, opset: int = 17) -> Seq2SeqGraphs:
    """Export ``model`` (T5-style, fp32, CPU) as ``encoder.onnx`` and ``decoder.onnx``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers, heads, head_dim = seq2seq_layout(model.config)
    graphs = Seq2SeqGraphs(
        folder / "encoder.onnx", DecoderGraph(folder / "decoder.onnx", layers, heads, head_dim)
    )
    ids = torch.ones(1, 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    batch_seq = {0: "batch", 1: "enc"}
    was_training = model.training
    with torch.no_grad():
        encoder = _Encoder(model).eval()
        torch.onnx.export(
            encoder,
            (ids, mask),
            str(graphs.encoder),
            input_names=[ENCODER_IDS, ENCODER_MASK],
            output_names=[HIDDEN],
            dynamic_axes={ENCODER_IDS: batch_seq, ENCODER_MASK: batch_seq, HIDDEN: batch_seq},
            opset_version=opset,
            dynamo=False,
        )
        hidden = encoder(ids, mask)
        past = [torch.zeros(1, heads, 2, head_dim) for _ in range(2 * layers)]
        axes: dict[str, dict[int, str]] = {
            DECODER_IDS: {0: "batch", 1: "seq"},
            HIDDEN: batch_seq,
            CROSS_MASK: batch_seq,
            LOGITS: {0: "batch", 1: "seq"},
        }
        axes.update({name: {0: "batch", 2: "past"} for name in graphs.decoder.past_names()})
        axes.update({name: {0: "batch", 2: "total"} for name in graphs.decoder.present_names()})
        torch.onnx.export(
            _DecoderWithPast(model, layers).eval(),
            (torch.zeros(1, 1, dtype=torch.long), hidden, mask, *past),
            str(graphs.decoder.path),
            input_names=[DECODER_IDS, HIDDEN, CROSS_MASK, *graphs.decoder.past_names()],
            output_names=[LOGITS, *graphs.decoder.present_names()],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    model.train(was_training)
    return graphs


def start_ids(config: Any, batch: int) -> torch.Tensor:
    """The decoder's first input: ``decoder_start_token_id`` (else pad) for each row."""
    start = getattr(config, "decoder_start_token_id", None)
    start = getattr(config, "pad_token_id", 0) if start is None else start
    return torch.full((batch, 1), int(start or 0), dtype=torch.long)
