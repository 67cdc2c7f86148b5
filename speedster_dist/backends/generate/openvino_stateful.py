"""OpenVINO stateful generator: the KV cache lives inside the compiled model.

The decoder graph (past key values in and out, see :mod:`._decoder_graph`) is read by OpenVINO
and made stateful with the public ``openvino.passes.MakeStateful`` pass: each ``past.*`` input
and its ``present.*`` output become one variable, so a step feeds only ``input_ids``,
``attention_mask`` and ``position_ids``; each generation resets the state to an empty cache of
the batch's size. Precisions: ``fp32``, ``bf16`` (``INFERENCE_PRECISION_HINT``, where the CPU has
bf16 instructions), and NNCF weight compression ``int8`` (INT8_ASYM) / ``int4`` (INT4_SYM,
``group_size`` knob). Saved data-only: the IR (xml/bin) and an allowlisted ``generation.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
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
from speedster_dist.backends.generate._seq2seq_graph import (
    CROSS_MASK,
    DECODER_IDS,
    ENCODER_IDS,
    ENCODER_MASK,
    HIDDEN,
    export_seq2seq,
    start_ids,
)

PRECISIONS = ("fp32", "bf16", "int8", "int4")
# What gen-core's GeneratorBackend declares for this backend (data, for its registry line).
CAPABILITIES: dict[str, Any] = {
    "name": "openvino-stateful",
    "hardware": ("cpu",),
    "precisions": PRECISIONS,
    "techniques": ("stateful-kv-cache", "nncf-weight-compression"),
    "knobs": {"group_size": (64, 128), "threads": None},
    "architectures": ("decoder-only", "encoder-decoder"),
}
IR_NAME = "decoder.xml"
META_NAME = "generation.json"
_META_KEYS = frozenset(
    {"num_layers", "num_kv_heads", "head_dim", "eos_token_id", "pad_token_id", "settings"}
    | {"decoder_start_token_id", "encoder"}
)
ENCODER_IR = "encoder.xml"
_SETTING_KEYS = frozenset({"precision", "threads", "group_size"})


@dataclass(frozen=True)
class OvGenerateSettings:
    """The knobs of an OpenVINO generator."""

    precision: str = "fp32"
    threads: int | None = None
    group_size: int = 128


def make_stateful(model: Any, graph: DecoderGraph) -> Any:
    """Turn each past input / present output pair of ``model`` into a state variable."""
    from openvino.passes import MakeStateful, Manager

    pairs = dict(zip(graph.past_names(), graph.present_names(), strict=True))
    manager = Manager()
    manager.register_pass(MakeStateful(pairs))
    manager.run_passes(model)
    return model


def compress(model: Any, settings: OvGenerateSettings) -> Any:
    """NNCF weight-only compression for int8 / int4; the model unchanged otherwise."""
    if settings.precision not in ("int8", "int4"):
        return model
    import nncf

    if settings.precision == "int8":
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    return nncf.compress_weights(
        model, mode=nncf.CompressWeightsMode.INT4_SYM, group_size=settings.group_size, ratio=1.0
    )


def compile_properties(settings: OvGenerateSettings) -> dict[str, Any]:
    """The CPU plugin properties for ``settings`` (inference precision, threads)."""
    hint = "bf16" if settings.precision == "bf16" else "f32"
    properties: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint}
    if settings.threads:
        properties["INFERENCE_NUM_THREADS"] = settings.threads
    return properties


class OvStatefulGenerator:
    """``generate(input_ids, attention_mask, max_new_tokens, **sampling) -> LongTensor``."""

    def __init__(
        self, model: Any, graph: DecoderGraph, config: Any, settings: OvGenerateSettings
    ) -> None:
        import openvino as ov

        self.model = model
        self.graph = graph
        self.config = config
        self.settings = settings
        self.compiled = ov.Core().compile_model(model, "CPU", compile_properties(settings))
        self.request = self.compiled.create_infer_request()

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        **sampling: Any,
    ) -> torch.Tensor:
        """Greedy (or sampled) generation; the cache stays in the request's state."""
        self.begin(int(input_ids.shape[0]))
        return _greedy.decode(
            self.step, input_ids, attention_mask, max_new_tokens, self.config, **sampling
        )

    # -- one step at a time (what :mod:`.split_phases` drives) ------------------------------
    def begin(self, batch: int) -> None:
        """Start a generation of ``batch`` rows from an empty cache."""
        import openvino as ov

        self.request.reset_state()
        empty = np.zeros((batch, self.graph.num_kv_heads, 0, self.graph.head_dim), np.float32)
        for state in self.request.query_state():
            state.state = ov.Tensor(empty)

    def _states_in_past_order(self) -> list[Any]:
        # MakeStateful names each variable after its pair: past name + present name.
        by_name = {state.name: state for state in self.request.query_state()}
        pairs = zip(self.graph.past_names(), self.graph.present_names(), strict=True)
        try:
            return [by_name[past + present] for past, present in pairs]
        except KeyError as missing:
            raise ValueError(f"the stateful model has no cache variable {missing}") from None

    def cache_arrays(self) -> list[np.ndarray]:
        """The cache after the last step, in ``graph.past_names()`` order, as host arrays."""
        return [np.array(state.state.data, np.float32) for state in self._states_in_past_order()]

    def take_cache(self, arrays: list[np.ndarray]) -> None:
        """Continue from a cache another generator of the same graph computed."""
        import openvino as ov

        states = self._states_in_past_order()
        if len(arrays) != len(states):
            raise ValueError(f"a cache of {len(arrays)} tensors for {self.graph.num_layers} layers")
        for state, array in zip(states, arrays, strict=True):
            state.state = ov.Tensor(np.ascontiguousarray(array, np.float32))

    def step(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One forward of ``ids`` on the cache; the logits of each row's last position."""
        feed = {
            INPUT_IDS: ids.numpy().astype(np.int64),
            ATTENTION_MASK: mask.numpy().astype(np.int64),
            POSITION_IDS: positions.numpy().astype(np.int64),
        }
        logits = self.request.infer(feed)[0]
        return torch.from_numpy(np.asarray(logits)[:, -1, :].astype(np.float32))

    def _extra_meta(self, folder: Path) -> dict[str, Any]:
        return {}

    def save(self, folder: Path) -> Path:
        """Write the IR and ``generation.json`` (no pickles) into ``folder``."""
        import openvino as ov

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        ov.save_model(self.model, str(folder / IR_NAME), compress_to_fp16=False)
        meta = {
            "num_layers": self.graph.num_layers,
            "num_kv_heads": self.graph.num_kv_heads,
            "head_dim": self.graph.head_dim,
            "eos_token_id": getattr(self.config, "eos_token_id", None),
            "pad_token_id": getattr(self.config, "pad_token_id", None),
            "settings": asdict(self.settings),
            **self._extra_meta(folder),
        }
        (folder / META_NAME).write_text(json.dumps(meta, indent=2))
        return folder


def load_ov_generator(folder: Path) -> OvStatefulGenerator:
    """Open a generator saved by :meth:`OvStatefulGenerator.save` (allowlisted keys only)."""
    import openvino as ov

    folder = Path(folder)
    meta = json.loads((folder / META_NAME).read_text())
    if (
        not isinstance(meta, dict)
        or set(meta) - _META_KEYS
        or set(meta.get("settings", {})) - _SETTING_KEYS
    ):
        raise ValueError(f"{folder / META_NAME} holds keys outside the allowlist")
    settings = OvGenerateSettings(**meta["settings"])
    if settings.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {settings.precision!r} in {folder / META_NAME}")
    graph = DecoderGraph(
        folder / IR_NAME, int(meta["num_layers"]), int(meta["num_kv_heads"]), int(meta["head_dim"])
    )
    config = SimpleNamespace(
        eos_token_id=meta["eos_token_id"],
        pad_token_id=meta["pad_token_id"],
        decoder_start_token_id=meta.get("decoder_start_token_id"),
    )
    model = ov.Core().read_model(str(folder / IR_NAME))
    if meta.get("encoder") == ENCODER_IR:
        encoder = ov.Core().read_model(str(folder / ENCODER_IR))
        return OvSeq2SeqGenerator(encoder, model, graph, config, settings)
    return OvStatefulGenerator(model, graph, config, settings)


def build_ov_generator(
    model: torch.nn.Module, folder: Path, settings: OvGenerateSettings | None = None
) -> OvStatefulGenerator:
    """Export ``model`` into ``folder``, make it stateful, compress its weights if asked."""
    import openvino as ov

    settings = settings or OvGenerateSettings()
    if settings.precision not in PRECISIONS:
        raise ValueError(
            f"OpenVINO generation precision must be one of {PRECISIONS}, not {settings.precision!r}"
        )
    core = ov.Core()
    if getattr(model.config, "is_encoder_decoder", False):
        graphs = export_seq2seq(model, Path(folder))
        decoder = make_stateful(core.read_model(str(graphs.decoder.path)), graphs.decoder)
        encoder = compress(core.read_model(str(graphs.encoder)), settings)
        return OvSeq2SeqGenerator(
            encoder, compress(decoder, settings), graphs.decoder, model.config, settings
        )
    graph = export_decoder(model, Path(folder) / "decoder.onnx")
    return ov_generator_from_graph(graph, model.config, settings)


def ov_generator_from_graph(
    graph: DecoderGraph, config: Any, settings: OvGenerateSettings, compress_weights: bool = True
) -> OvStatefulGenerator:
    """A decoder-only stateful generator on an exported decoder graph: fp32, compressed by
    NNCF as ``settings`` asks, or (``compress_weights=False``) read as it is, e.g. ONNX
    Runtime's graph with MatMulNBits int8 / int4 weights, which OpenVINO's ONNX reader keeps
    compressed."""
    import openvino as ov

    ov_model = make_stateful(ov.Core().read_model(str(graph.path)), graph)
    if compress_weights:
        ov_model = compress(ov_model, settings)
    return OvStatefulGenerator(ov_model, graph, config, settings)


class OvSeq2SeqGenerator(OvStatefulGenerator):
    """Encoder-decoder: the encoder compiled once, the decoder stateful (its self-attn cache)."""

    def __init__(
        self,
        encoder: Any,
        decoder: Any,
        graph: DecoderGraph,
        config: Any,
        settings: OvGenerateSettings,
    ) -> None:
        import openvino as ov

        super().__init__(decoder, graph, config, settings)
        self.encoder_model = encoder
        self.encoder = ov.Core().compile_model(encoder, "CPU", compile_properties(settings))

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        **sampling: Any,
    ) -> torch.Tensor:
        """Decoder token ids (start token first), as HF ``generate()`` returns for T5."""
        mask = (
            (torch.ones_like(input_ids) if attention_mask is None else attention_mask)
            .long()
            .numpy()
        )
        ids = input_ids.long().numpy()
        hidden = np.asarray(self.encoder({ENCODER_IDS: ids, ENCODER_MASK: mask})[0])
        self.begin(int(input_ids.shape[0]))

        def step(
            tokens: torch.Tensor, _mask: torch.Tensor, _positions: torch.Tensor
        ) -> torch.Tensor:
            feed = {DECODER_IDS: tokens[:, -1:].numpy(), HIDDEN: hidden, CROSS_MASK: mask}
            logits = np.asarray(self.request.infer(feed)[0])
            return torch.from_numpy(logits[:, -1, :].astype(np.float32))

        start = start_ids(self.config, int(input_ids.shape[0]))
        return _greedy.decode(step, start, None, max_new_tokens, self.config, **sampling)

    def _extra_meta(self, folder: Path) -> dict[str, Any]:
        import openvino as ov

        ov.save_model(self.encoder_model, str(folder / ENCODER_IR), compress_to_fp16=False)
        start = getattr(self.config, "decoder_start_token_id", None)
        return {"encoder": ENCODER_IR, "decoder_start_token_id": start}
