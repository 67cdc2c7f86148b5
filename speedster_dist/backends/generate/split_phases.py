"""Prefill on one backend, decode on another: the ``generate_split`` backend.

The prompt's forward pass (the prefill: many tokens at once, compute-bound) and the decode
loop (one token a step, memory- and overhead-bound) favour different runtimes. On a 2-core
AVX-512 CPU with GPT-2 124M and a 512-token prompt, OpenVINO prefills in 215 ms where ONNX
Runtime takes 336 ms (int8 weights), while ONNX Runtime decodes a token in 8.7 ms where
OpenVINO takes 11.3 ms (docs/benchmarks.md). This backend runs the prefill on one and the
decode on the other: both are built from the *same* exported decoder graph
(:mod:`._decoder_graph`: ``past.*`` in, ``present.*`` out, one cache layout), and after the
prefill the cache is handed over as host arrays, once per generation.

Which backend takes which phase is the ``phases`` knob (``"openvino>onnxruntime"``: OpenVINO
prefills, ONNX Runtime decodes); the precision applies to both (fp32, or weight-only int8 /
int4: ONNX Runtime's MatMulNBits weights, which OpenVINO reads from the same graph, so both
phases run one set of weights). Decoder-only models on the CPU: its capabilities
take the ``"generate"`` source only, so an encoder-decoder search (``"generate-seq2seq"``,
whose "prefill" is the encoder, run once already) never proposes it. The search measures
and guards a split like any other candidate, so it wins only where it is faster. Ignoring
``generate_onnxruntime`` or ``generate_openvino`` ignores this backend too (:attr:`parts`).

Saved data-only: ``prefill/`` and ``decode/`` as each backend saves itself, and an allowlisted
``split.json`` naming which is which.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from speedster_dist.backends._protocol import (
    BuildConfig,
    Capability,
    Knob,
    SourceModel,
    Tensors,
    UnsupportedCandidate,
)
from speedster_dist.backends.generate import _greedy
from speedster_dist.backends.generate._compiled import GeneratorCompiled
from speedster_dist.backends.generate.backends import (
    DECODER_ONLY_SOURCE,
    GeneratorBackend,
    require_generation,
)
from speedster_dist.records import DeviceKind, Precision

__all__ = ["SPLIT", "PhaseGenerator", "SplitGenerator", "load_split", "save_split"]

ORT_NAME, OV_NAME = "onnxruntime", "openvino"
PHASES = (f"{OV_NAME}>{ORT_NAME}", f"{ORT_NAME}>{OV_NAME}")  # prefill>decode
PRECISIONS = ("fp32", "int8", "int4")  # what both backends build
TECHNIQUE = "prefill-decode-split"
META_NAME = "split.json"
_META_KEYS = frozenset({"prefill", "decode"})


class PhaseGenerator(Protocol):
    """What a decoder-only generator offers to be driven one step at a time."""

    config: Any

    def begin(self, batch: int) -> None: ...

    def step(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor: ...

    def cache_arrays(self) -> list[np.ndarray]: ...

    def take_cache(self, arrays: list[np.ndarray]) -> None: ...


class SplitGenerator:
    """``generate()`` with the prefill on ``prefill`` and every later step on ``decode``."""

    def __init__(
        self, prefill: PhaseGenerator, decode: PhaseGenerator, names: tuple[str, str]
    ) -> None:
        self.prefill_generator = prefill
        self.decode_generator = decode
        self.names = names  # (prefill backend, decode backend)
        self.config = decode.config

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        **sampling: Any,
    ) -> torch.Tensor:
        """Greedy (or sampled) generation, as Hugging Face ``generate()`` returns it."""
        batch = int(input_ids.shape[0])
        self.prefill_generator.begin(batch)
        self.decode_generator.begin(batch)
        prefilled = False

        def step(ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
            nonlocal prefilled
            if prefilled:
                return self.decode_generator.step(ids, mask, positions)
            prefilled = True
            logits = self.prefill_generator.step(ids, mask, positions)
            self.decode_generator.take_cache(self.prefill_generator.cache_arrays())
            self.prefill_generator.begin(batch)  # its copy of the cache is not needed again
            return logits

        try:
            return _greedy.decode(
                step, input_ids, attention_mask, max_new_tokens, self.config, **sampling
            )
        finally:
            self.decode_generator.begin(0)  # free the cache between generations

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The prefill's next-token logits (what the accuracy guard compares by cosine)."""
        mask = attention_mask.long()
        self.prefill_generator.begin(int(input_ids.shape[0]))
        try:
            positions = _greedy.positions_from_mask(mask)
            return self.prefill_generator.step(input_ids.long(), mask, positions)
        finally:
            self.prefill_generator.begin(0)


def parse_phases(value: str) -> tuple[str, str]:
    """``"openvino>onnxruntime"`` as (prefill backend, decode backend), validated."""
    if value not in PHASES:
        raise ValueError(f"phases must be one of {list(PHASES)}, got {value!r}")
    prefill, decode = value.split(">")
    return prefill, decode


def build_split(
    model: torch.nn.Module, folder: Path, phases: str, precision: str
) -> SplitGenerator:
    """Export ``model``'s decoder once into ``folder``; both phases' generators on it."""
    from speedster_dist.backends.generate._decoder_graph import export_decoder
    from speedster_dist.backends.generate.onnxruntime_past import (
        OrtGenerateSettings,
        ort_generator_from_graph,
    )
    from speedster_dist.backends.generate.openvino_stateful import (
        OvGenerateSettings,
        ov_generator_from_graph,
    )

    if precision not in PRECISIONS:
        raise ValueError(f"split precision must be one of {PRECISIONS}, not {precision!r}")
    names = parse_phases(phases)
    graph = export_decoder(model, Path(folder) / "decoder_fp32.onnx")
    # accuracy_level 4 and block 32: generate_onnxruntime's first (fastest) knob values
    ort_settings = OrtGenerateSettings(precision=precision, accuracy_level=4, block_size=32)
    ort = ort_generator_from_graph(graph, model.config, ort_settings)
    # OpenVINO reads ONNX Runtime's graph as it is, its MatMulNBits weights included: both
    # phases run one set of int8 / int4 weights. With NNCF's own rounding in one phase, the
    # other phase decodes from a cache it did not compute (GPT-2, 512-token prompt, random
    # weights: 0.50 greedy agreement against 1.00 with one set; the prefill as fast).
    ov_settings = OvGenerateSettings(precision=precision)
    ov = ov_generator_from_graph(ort.graph, model.config, ov_settings, compress_weights=False)
    built: dict[str, Any] = {ORT_NAME: ort, OV_NAME: ov}
    return SplitGenerator(built[names[0]], built[names[1]], names)


def save_split(generator: SplitGenerator, folder: Path) -> Path:
    """``prefill/`` and ``decode/`` as their backends save them, and ``split.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for phase, name, part in (
        ("prefill", generator.names[0], generator.prefill_generator),
        ("decode", generator.names[1], generator.decode_generator),
    ):
        _save_part(name, part, folder / phase)
    meta = {"prefill": generator.names[0], "decode": generator.names[1]}
    (folder / META_NAME).write_text(json.dumps(meta, indent=2))
    return folder


def _save_part(name: str, part: Any, folder: Path) -> None:
    if name == ORT_NAME:
        from speedster_dist.backends.generate.onnxruntime_past import save_ort_generator

        save_ort_generator(part, folder)
    else:
        part.save(folder)


def load_split(folder: Path) -> SplitGenerator:
    """Open what :func:`save_split` wrote; keys or names outside the allowlist are refused."""
    folder = Path(folder)
    meta = json.loads((folder / META_NAME).read_text())
    if not isinstance(meta, dict) or set(meta) - _META_KEYS:
        raise ValueError(f"{folder / META_NAME} holds keys outside the allowlist")
    names = parse_phases(f"{meta.get('prefill')}>{meta.get('decode')}")
    prefill = _load_part(names[0], folder / "prefill")
    decode = _load_part(names[1], folder / "decode")
    layouts = {
        (p.graph.num_layers, p.graph.num_kv_heads, p.graph.head_dim) for p in (prefill, decode)
    }
    if len(layouts) != 1:  # the cache handed over must fit the decode's graph
        raise ValueError(f"{folder}: the prefill and decode parts have different cache layouts")
    return SplitGenerator(prefill, decode, names)


def _load_part(name: str, folder: Path) -> Any:
    if name == ORT_NAME:
        from speedster_dist.backends.generate.onnxruntime_past import (
            OrtPastGenerator,
            load_ort_generator,
        )

        part: Any = load_ort_generator(folder)
        expected: type = OrtPastGenerator
    else:
        from speedster_dist.backends.generate.openvino_stateful import (
            OvSeq2SeqGenerator,
            OvStatefulGenerator,
            load_ov_generator,
        )

        part = load_ov_generator(folder)
        expected = OvStatefulGenerator
        if isinstance(part, OvSeq2SeqGenerator):
            raise ValueError(f"{folder} holds an encoder-decoder model: no split for it")
    if not isinstance(part, expected):
        raise ValueError(f"{folder} does not hold a decoder-only {name} generator")
    return part


def longest_prompt(model: SourceModel, calibration: Sequence[Tensors]) -> int:
    """The most tokens of any prompt the search times or judges (padding not counted)."""
    longest = 0
    for prompt in (model.example_inputs, *calibration):
        if not prompt:
            continue
        tokens = prompt[1] if len(prompt) > 1 else torch.ones_like(prompt[0])
        longest = max(longest, int(tokens.long().sum(-1).max()))
    return longest


class SplitGenerateBackend(GeneratorBackend):
    """``generate_split``: the prefill on one backend, the decode on the other (CPU)."""

    name = "generate_split"
    # Below this many prompt tokens the prefill is too small a part of a generation for a
    # split to pay: GPT-2 124M, int8, this 2-core CPU: OpenVINO prefills 128 tokens 26 ms
    # faster than ONNX Runtime (of a ~500 ms generation), 32 tokens 4 ms; fp32 differs only
    # from ~512 tokens (docs/benchmarks.md). The build refuses at once, before any export.
    min_prompt_tokens = 128
    # Ignoring either backend it is made of ignores it too.
    parts = ("generate_onnxruntime", "generate_openvino")
    capabilities = tuple(
        Capability(DeviceKind.CPU, Precision(name), TECHNIQUE, frozenset(), DECODER_ONLY_SOURCE)
        for name in PRECISIONS
    )
    knobs = (Knob("phases", PHASES),)

    def unavailable_reason(self, device: DeviceKind) -> str | None:
        if device is not DeviceKind.CPU:
            return "the prefill/decode split runs on the CPU only (OpenVINO's generator does)"
        for module in ("onnxruntime", "openvino"):
            try:
                __import__(module)
            except Exception as exc:
                return f"{module} does not import: {exc}"
        return None

    def build(
        self, model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig, workdir: Path
    ) -> GeneratorCompiled:
        module = require_generation(model)
        if getattr(module.config, "is_encoder_decoder", False):
            raise UnsupportedCandidate(
                "an encoder-decoder model runs its prompt once through the encoder: "
                "there is no prefill to move to another backend"
            )
        longest = longest_prompt(model, calibration)
        if longest < self.min_prompt_tokens:
            raise UnsupportedCandidate(
                f"the prompts are at most {longest} tokens; a prefill/decode split is tried "
                f"from {self.min_prompt_tokens}, below which the prefill is too small a part "
                "of a generation to pay for a second backend"
            )
        phases = str(config.knobs.get("phases", PHASES[0]))
        generator = build_split(module, workdir / "split", phases, config.precision.value)
        return GeneratorCompiled(
            generator,
            model.max_new_tokens,
            lambda folder: save_split(generator, folder),
            generator.prefill,
        )

    def load(
        self, directory: Path, options: Mapping[str, Any], device: DeviceKind
    ) -> GeneratorCompiled:
        generator = load_split(directory)
        count = int(options.get("max_new_tokens", 32))
        return GeneratorCompiled(
            generator, count, lambda folder: save_split(generator, folder), generator.prefill
        )


SPLIT = SplitGenerateBackend()
