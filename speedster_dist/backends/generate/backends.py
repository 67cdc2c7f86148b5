"""The generation backends as the search sees them: capabilities and knobs as data.

Four backends, one registry line each (``backends/_registry.py``):

- ``generate_torch``: Hugging Face ``generate()`` in eager torch, the baseline;
- ``generate_torch_compile``: :mod:`.torch_compiled` (the static cache, the decode step
  compiled by ``torch.compile``: CUDA graphs on a GPU; fp32, bf16);
- ``generate_onnxruntime``: :mod:`.onnxruntime_past` (past key values with IO binding; fp32,
  weight-only int8 / int4 ``MatMulNBits``);
- ``generate_openvino``: :mod:`.openvino_stateful` (cache inside the model; fp32, bf16, NNCF
  weight-only int8 / int4).

Their capabilities accept only the generation source formats (a
:class:`~speedster_dist.backends.SourceModel` with a ``task``: ``"generate"`` for a causal
LM, ``"generate-seq2seq"`` for an encoder-decoder), so a forward-pass search never sees them
and a generation search sees nothing else. They are derived from each
generator module's ``CAPABILITIES`` dict; heavy libraries are imported when a build or a load
needs them.
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
    UnsupportedCandidate,
)
from speedster_dist.backends.generate._compiled import GeneratorCompiled
from speedster_dist.records import DeviceKind, Precision

__all__ = [
    "COMPILED",
    "ORT",
    "OV",
    "TORCH",
    "GeneratorBackend",
    "capabilities_from",
    "require_generation",
]

# Causal LMs and encoder-decoders; a decoder-only technique (the prefill/decode split)
# declares DECODER_ONLY_SOURCE instead.
DECODER_ONLY_SOURCE = frozenset({"generate"})
GENERATE_SOURCE = frozenset({"generate", "generate-seq2seq"})
STATIC_CACHE = "static-cache"
_WEIGHT_ONLY = frozenset({Precision.INT8, Precision.INT4})
_BF16_FEATURES = frozenset({"avx512_bf16", "amx_bf16"})


def capabilities_from(declared: Mapping[str, Any]) -> tuple[Capability, ...]:
    """A generator module's ``CAPABILITIES`` dict as capability records: precisions in float
    take its first technique, weight-only int8 / int4 its second; bf16 needs native bf16."""
    techniques = declared["techniques"]
    found = []
    for device in declared["hardware"]:
        for name in declared["precisions"]:
            precision = Precision(name)
            if device == "gpu" and precision is not Precision.FP32:
                continue  # only fp32 is checked on a GPU so far (the CUDA EP path)
            weight_only = precision in _WEIGHT_ONLY
            technique = techniques[1] if weight_only and len(techniques) > 1 else techniques[0]
            needs = _BF16_FEATURES if precision is Precision.BF16 else frozenset()
            found.append(Capability(device, precision, technique, needs, GENERATE_SOURCE))
    return tuple(found)


def require_generation(model: SourceModel) -> Any:
    """The Hugging Face model of a generation source; UnsupportedCandidate for any other."""
    if not model.task or model.module is None:
        raise UnsupportedCandidate("a generation backend needs a model that can generate()")
    return model.module


class GeneratorBackend:
    """What the three generation backends share: no trust needed to load, no file options."""

    name = ""
    capabilities: tuple[Capability, ...] = ()
    knobs: tuple[Knob, ...] = ()
    saves_code = False
    file_options: tuple[str, ...] = ()

    def unavailable_reason(self, device: DeviceKind) -> str | None:
        raise NotImplementedError

    def load(self, directory: Path, options: Mapping[str, Any], device: DeviceKind) -> Any:
        raise NotImplementedError


class TorchGenerateBackend(GeneratorBackend):
    """Hugging Face ``generate()``, eager, default cache: the baseline."""

    name = "generate_torch"
    # "static-cache": Hugging Face's static cache, eager (its compiled decode step is
    # generate_torch_compile's); the baseline is the default cache.
    capabilities = tuple(
        Capability(device, Precision.FP32, technique, frozenset(), GENERATE_SOURCE)
        for device in (DeviceKind.CPU, DeviceKind.GPU)
        for technique in ("", STATIC_CACHE)
    )

    def unavailable_reason(self, device: DeviceKind) -> str | None:
        import torch

        if device is DeviceKind.GPU and not torch.cuda.is_available():
            return "torch has no CUDA device here"
        return None

    def build(
        self, model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig, workdir: Path
    ) -> GeneratorCompiled:
        from speedster_dist.backends.generate.torch_generate import TorchGenerator

        module = require_generation(model)
        device = "cuda" if config.device is DeviceKind.GPU else "cpu"
        if device == "cuda":  # the source model is shared with other trials: copy, then move
            module = copy.deepcopy(module).to(device)
        cache = "static" if config.technique == STATIC_CACHE else ""
        generator = TorchGenerator(module, device, cache)
        return GeneratorCompiled(
            generator,
            model.max_new_tokens,
            generator.save,
            generator.prefill,
            device,
            {"cache_implementation": cache},
        )

    def load(
        self, directory: Path, options: Mapping[str, Any], device: DeviceKind
    ) -> GeneratorCompiled:
        from speedster_dist.backends.generate.torch_generate import load_torch_generator

        where = "cuda" if device is DeviceKind.GPU else "cpu"
        cache = str(options.get("cache_implementation", ""))
        if cache not in ("", "static"):
            raise ValueError(f"unknown cache_implementation {cache!r}")
        generator = load_torch_generator(directory, where, cache)
        count = int(options.get("max_new_tokens", 32))
        return GeneratorCompiled(
            generator,
            count,
            generator.save,
            generator.prefill,
            where,
            {"cache_implementation": cache},
        )


class OrtGenerateBackend(GeneratorBackend):
    """ONNX Runtime with past key values in and out (:mod:`.onnxruntime_past`)."""

    name = "generate_onnxruntime"
    # accuracy_level 4 (int8 activations: VNNI dot products) first: the faster, and the
    # agreement guard judges it (docs/benchmarks.md: 100% greedy agreement for int8).
    knobs = (
        Knob("accuracy_level", (4, 0), precisions=_WEIGHT_ONLY),
        Knob("block_size", (32, 128), precisions=_WEIGHT_ONLY),
    )

    def __init__(self) -> None:
        from speedster_dist.backends.generate.onnxruntime_past import CAPABILITIES

        self.capabilities = capabilities_from(CAPABILITIES)

    def unavailable_reason(self, device: DeviceKind) -> str | None:
        try:
            import onnxruntime as ort
        except Exception as exc:  # missing or broken: unavailable, never a crash
            return f"onnxruntime does not import: {exc}"
        if (
            device is DeviceKind.GPU
            and "CUDAExecutionProvider" not in ort.get_available_providers()
        ):
            return "onnxruntime has no CUDA execution provider here"
        return None

    def build(
        self, model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig, workdir: Path
    ) -> GeneratorCompiled:
        from speedster_dist.backends.generate.onnxruntime_past import (
            OrtGenerateSettings,
            build_ort_generator,
            save_ort_generator,
        )

        settings = OrtGenerateSettings(
            precision=config.precision.value,
            accuracy_level=int(config.knobs.get("accuracy_level", 0)),
            block_size=int(config.knobs.get("block_size", 32)),
            providers=_providers(config.device),
        )
        generator = build_ort_generator(require_generation(model), workdir / "ort", settings)
        return GeneratorCompiled(
            generator, model.max_new_tokens, lambda d: save_ort_generator(generator, d)
        )

    def load(
        self, directory: Path, options: Mapping[str, Any], device: DeviceKind
    ) -> GeneratorCompiled:
        from speedster_dist.backends.generate.onnxruntime_past import (
            load_ort_generator,
            save_ort_generator,
        )

        generator = load_ort_generator(directory)
        count = int(options.get("max_new_tokens", 32))
        return GeneratorCompiled(generator, count, lambda d: save_ort_generator(generator, d))


def _providers(device: DeviceKind) -> tuple[str, ...]:
    if device is DeviceKind.GPU:
        return ("CUDAExecutionProvider", "CPUExecutionProvider")
    return ("CPUExecutionProvider",)


class OvGenerateBackend(GeneratorBackend):
    """OpenVINO, stateful (:mod:`.openvino_stateful`)."""

    name = "generate_openvino"
    knobs = (Knob("group_size", (128, 64), precisions=frozenset({Precision.INT4})),)

    def __init__(self) -> None:
        from speedster_dist.backends.generate.openvino_stateful import CAPABILITIES

        self.capabilities = capabilities_from(CAPABILITIES)

    def unavailable_reason(self, device: DeviceKind) -> str | None:
        if device is not DeviceKind.CPU:
            return "the OpenVINO generator runs on the CPU only"
        try:
            import openvino  # noqa: F401
        except Exception as exc:
            return f"openvino does not import: {exc}"
        return None

    def build(
        self, model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig, workdir: Path
    ) -> GeneratorCompiled:
        from speedster_dist.backends.generate.openvino_stateful import (
            OvGenerateSettings,
            build_ov_generator,
        )

        settings = OvGenerateSettings(
            precision=config.precision.value,
            group_size=int(config.knobs.get("group_size", 128)),
        )
        generator = build_ov_generator(require_generation(model), workdir / "ov", settings)
        return GeneratorCompiled(generator, model.max_new_tokens, generator.save)

    def load(
        self, directory: Path, options: Mapping[str, Any], device: DeviceKind
    ) -> GeneratorCompiled:
        from speedster_dist.backends.generate.openvino_stateful import load_ov_generator

        generator = load_ov_generator(directory)
        count = int(options.get("max_new_tokens", 32))
        return GeneratorCompiled(generator, count, generator.save)


class CompiledGenerateBackend(GeneratorBackend):
    """The static cache with the decode step compiled (:mod:`.torch_compiled`)."""

    name = "generate_torch_compile"
    # CUDA graphs ("reduce-overhead") first; off: inductor's kernels alone.
    knobs = (Knob("cuda_graphs", (True, False), devices=frozenset({DeviceKind.GPU})),)

    def __init__(self) -> None:
        from speedster_dist.backends.generate.torch_compiled import CAPABILITIES

        self.capabilities = capabilities_from(CAPABILITIES)

    def unavailable_reason(self, device: DeviceKind) -> str | None:
        import torch

        from speedster_dist.backends.generate.torch_compiled import cpp_compiler

        if device is DeviceKind.GPU:
            return None if torch.cuda.is_available() else "torch has no CUDA device here"
        if cpp_compiler() is None:
            return "torch.compile (inductor) needs a C++ compiler on the CPU: none found"
        return None

    def build(
        self, model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig, workdir: Path
    ) -> GeneratorCompiled:
        from speedster_dist.backends.generate.torch_compiled import (
            CompileSettings,
            build_compiled_generator,
        )

        settings = CompileSettings(
            config.precision.value, bool(config.knobs.get("cuda_graphs", True))
        )
        device = "cuda" if config.device is DeviceKind.GPU else "cpu"
        prompts = [tuple(prompt) for prompt in calibration] or [tuple(model.example_inputs)]
        generator, seconds = build_compiled_generator(
            require_generation(model), device, settings, prompts, model.max_new_tokens
        )
        compiled = GeneratorCompiled(
            generator,
            model.max_new_tokens,
            generator.save,
            generator.prefill,
            device,
            generator.options(),
        )
        mode = settings.mode(device)
        compiled.notes = (
            f"{self.name} {settings.precision}: decode step compiled in {seconds:.1f} s "
            f"(torch.compile mode={mode}, part of the trial's build)",
        )
        return compiled

    def load(
        self, directory: Path, options: Mapping[str, Any], device: DeviceKind
    ) -> GeneratorCompiled:
        from speedster_dist.backends.generate.torch_compiled import load_compiled_generator

        where = "cuda" if device is DeviceKind.GPU else "cpu"
        length = options.get("max_cache_len")
        if not isinstance(length, int) or isinstance(length, bool) or length < 2:
            raise ValueError(f"max_cache_len must be an integer >= 2, got {length!r}")
        generator = load_compiled_generator(directory, where, dict(options))
        count = int(options.get("max_new_tokens", 32))
        return GeneratorCompiled(
            generator, count, generator.save, generator.prefill, where, generator.options()
        )


TORCH = TorchGenerateBackend()
COMPILED = CompiledGenerateBackend()
ORT = OrtGenerateBackend()
OV = OvGenerateBackend()
