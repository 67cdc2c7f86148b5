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
    LOGITS,
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
    Seq2SeqGraphs,
    export_seq2seq,
    start_ids,
)

PRECISIONS = ("fp32", "int8", "int4")
# What gen-core's GeneratorBackend declares for this backend (data, for its registry line).
CAPABILITIES: dict[str, Any] = {
    "name": "onnxruntime-past",
    "hardware": ("cpu", "gpu"),
    "precisions": PRECISIONS,
    "techniques": ("past-kv-io-binding", "weight-only-matmulnbits"),
    "knobs": {"accuracy_level": (0, 4), "block_size": (32, 128), "threads": None},
    "architectures": ("decoder-only", "encoder-decoder"),
}


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
        self.graph = graph
        self.config = config
        self.settings = settings
        self.session = _session(graph.path, settings)
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
        self.begin(int(input_ids.shape[0]))
        try:
            return _greedy.decode(
                self.step, input_ids, attention_mask, max_new_tokens, self.config, **sampling
            )
        finally:
            self.begin(0)

    # -- one step at a time (what :mod:`.split_phases` drives) ------------------------------
    def begin(self, batch: int) -> None:
        """Start a generation of ``batch`` rows from an empty cache (0: just let it go)."""
        self._past = []

    def cache_arrays(self) -> list[np.ndarray]:
        """The cache after the last step, in ``graph.past_names()`` order, as host arrays."""
        return [value.numpy() for value in self._past]

    def take_cache(self, arrays: list[np.ndarray]) -> None:
        """Continue from a cache another generator of the same graph computed."""
        import onnxruntime as ort

        if len(arrays) != len(self.graph.past_names()):
            raise ValueError(f"a cache of {len(arrays)} tensors for {self.graph.num_layers} layers")
        self._past = [
            ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a, np.float32), self._device)
            for a in arrays
        ]

    def step(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One forward of ``ids`` on the cache; the logits of each row's last position."""
        feeds = {
            INPUT_IDS: ids.numpy(),
            ATTENTION_MASK: mask.numpy(),
            POSITION_IDS: positions.numpy(),
        }
        logits, self._past = run_with_past(
            self.session, self.graph, feeds, self._past, self._device
        )
        return logits


def run_with_past(
    session: Any, graph: DecoderGraph, feeds: dict[str, np.ndarray], past: list[Any], device: str
) -> tuple[torch.Tensor, list[Any]]:
    """One IO-bound step: ``feeds`` and the past OrtValues in; last logits and new past out."""
    binding = session.io_binding()
    for name, array in feeds.items():
        dtype = np.float32 if array.dtype.kind == "f" else np.int64
        binding.bind_cpu_input(name, np.ascontiguousarray(array, dtype=dtype))
    if past:
        for name, value in zip(graph.past_names(), past, strict=True):
            binding.bind_ortvalue_input(name, value)
    else:
        batch = next(iter(feeds.values())).shape[0]
        empty = np.zeros((batch, graph.num_kv_heads, 0, graph.head_dim), np.float32)
        for name in graph.past_names():
            binding.bind_cpu_input(name, empty)
    for output in session.get_outputs():  # the cache stays on the device; logits come to the host
        binding.bind_output(output.name, "cpu" if output.name == LOGITS else device)
    session.run_with_iobinding(binding)
    outputs = binding.get_outputs()
    return torch.from_numpy(outputs[0].numpy()[:, -1, :].copy()), list(outputs[1:])


class OrtSeq2SeqGenerator:
    """Encoder-decoder generation: the encoder session once, the decoder session with its cache."""

    def __init__(self, graphs: Seq2SeqGraphs, config: Any, settings: OrtGenerateSettings) -> None:
        self.graphs = graphs
        self.config = config
        self.settings = settings
        self.encoder = _session(graphs.encoder, settings)
        self.decoder = _session(graphs.decoder.path, settings)
        self._device = "cuda" if "CUDAExecutionProvider" in settings.providers else "cpu"

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
        (hidden,) = self.encoder.run(
            [HIDDEN], {ENCODER_IDS: input_ids.long().numpy(), ENCODER_MASK: mask}
        )
        past: list[Any] = []

        def step(ids: torch.Tensor, _mask: torch.Tensor, _positions: torch.Tensor) -> torch.Tensor:
            nonlocal past
            feeds = {DECODER_IDS: ids[:, -1:].numpy(), HIDDEN: hidden, CROSS_MASK: mask}
            logits, past = run_with_past(
                self.decoder, self.graphs.decoder, feeds, past, self._device
            )
            return logits

        start = start_ids(self.config, int(input_ids.shape[0]))
        return _greedy.decode(step, start, None, max_new_tokens, self.config, **sampling)


def _session(path: Path, settings: OrtGenerateSettings) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if settings.threads:
        options.intra_op_num_threads = settings.threads
    return ort.InferenceSession(str(path), options, providers=list(settings.providers))


def build_ort_generator(
    model: torch.nn.Module, folder: Path, settings: OrtGenerateSettings | None = None
) -> OrtPastGenerator | OrtSeq2SeqGenerator:
    """Export ``model`` into ``folder``, compress its weights if asked, and open its sessions.

    Encoder-decoder models (``config.is_encoder_decoder``) get :class:`OrtSeq2SeqGenerator`.
    """
    settings = settings or OrtGenerateSettings()
    if settings.precision not in PRECISIONS:
        raise ValueError(
            f"ORT generation precision must be one of {PRECISIONS}, not {settings.precision!r}"
        )
    folder = Path(folder)
    if getattr(model.config, "is_encoder_decoder", False):
        graphs = export_seq2seq(model, folder)
        decoder = _compressed(graphs.decoder, settings)
        encoder = _compressed(DecoderGraph(graphs.encoder, 0, 0, 0), settings).path
        return OrtSeq2SeqGenerator(Seq2SeqGraphs(encoder, decoder), model.config, settings)
    graph = export_decoder(model, folder / "decoder_fp32.onnx")
    return ort_generator_from_graph(graph, model.config, settings)


def ort_generator_from_graph(
    graph: DecoderGraph, config: Any, settings: OrtGenerateSettings
) -> OrtPastGenerator:
    """A decoder-only generator on an exported fp32 decoder graph (compressed if asked)."""
    return OrtPastGenerator(_compressed(graph, settings), config, settings)


def _compressed(graph: DecoderGraph, settings: OrtGenerateSettings) -> DecoderGraph:
    if settings.precision == "fp32":
        return graph
    from speedster_dist.backends.generate._nbits import compress_weights

    target = graph.path.with_name(f"{graph.path.stem}_{settings.precision}.onnx")
    compress_weights(
        graph.path, target, settings.precision, settings.accuracy_level, settings.block_size
    )
    return DecoderGraph(target, graph.num_layers, graph.num_kv_heads, graph.head_dim)


META_NAME = "generation.json"
_META_KEYS = frozenset(
    {"num_layers", "num_kv_heads", "head_dim", "eos_token_id", "pad_token_id"}
    | {"decoder_start_token_id", "encoder", "settings"}
)
_SETTING_KEYS = frozenset({"precision", "accuracy_level", "block_size", "threads", "providers"})


def save_ort_generator(generator: OrtPastGenerator | OrtSeq2SeqGenerator, folder: Path) -> Path:
    """Write the ONNX graph(s) and an allowlisted ``generation.json`` (no pickles)."""
    import json
    import shutil
    from dataclasses import asdict

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    graph = generator.graph if isinstance(generator, OrtPastGenerator) else generator.graphs.decoder
    shutil.copyfile(graph.path, folder / "decoder.onnx")
    config = generator.config
    meta: dict[str, Any] = {
        "num_layers": graph.num_layers,
        "num_kv_heads": graph.num_kv_heads,
        "head_dim": graph.head_dim,
        "eos_token_id": getattr(config, "eos_token_id", None),
        "pad_token_id": getattr(config, "pad_token_id", None),
        "settings": asdict(generator.settings),
    }
    if isinstance(generator, OrtSeq2SeqGenerator):
        shutil.copyfile(generator.graphs.encoder, folder / "encoder.onnx")
        meta["encoder"] = "encoder.onnx"
        meta["decoder_start_token_id"] = getattr(config, "decoder_start_token_id", None)
    (folder / META_NAME).write_text(json.dumps(meta, indent=2))
    return folder


def load_ort_generator(folder: Path) -> OrtPastGenerator | OrtSeq2SeqGenerator:
    """Open what :func:`save_ort_generator` wrote; any key outside the allowlist is refused."""
    import json
    from types import SimpleNamespace

    folder = Path(folder)
    meta = json.loads((folder / META_NAME).read_text())
    settings_meta = meta.get("settings", {}) if isinstance(meta, dict) else {}
    if not isinstance(meta, dict) or set(meta) - _META_KEYS or set(settings_meta) - _SETTING_KEYS:
        raise ValueError(f"{folder / META_NAME} holds keys outside the allowlist")
    settings = OrtGenerateSettings(
        **{
            **settings_meta,
            "providers": tuple(settings_meta.get("providers", ("CPUExecutionProvider",))),
        }
    )
    if settings.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {settings.precision!r} in {folder / META_NAME}")
    graph = DecoderGraph(
        folder / "decoder.onnx",
        int(meta["num_layers"]),
        int(meta["num_kv_heads"]),
        int(meta["head_dim"]),
    )
    config = SimpleNamespace(
        eos_token_id=meta["eos_token_id"],
        pad_token_id=meta["pad_token_id"],
        decoder_start_token_id=meta.get("decoder_start_token_id"),
    )
    if meta.get("encoder") == "encoder.onnx":
        return OrtSeq2SeqGenerator(Seq2SeqGraphs(folder / "encoder.onnx", graph), config, settings)
    return OrtPastGenerator(graph, config, settings)
