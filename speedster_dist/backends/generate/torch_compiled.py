"""``torch.compile`` of the one-token decode step, on Hugging Face's static cache.

Hugging Face ``generate()`` with ``cache_implementation="static"`` (the cache preallocated to
a fixed length, so every decode step has the same shapes) and a ``CompileConfig``: the decode
forward is compiled once by ``torch.compile`` (inductor), the prefill runs uncompiled (its
length varies with the prompt). On a GPU the mode is ``"reduce-overhead"`` (CUDA graphs: a step
is one graph replay) unless the ``cuda_graphs`` knob is off; on the CPU it is inductor's
``"default"`` (C++/OpenMP kernels; ``generate()`` compiles on a CPU only when asked, which this
module does). Precisions: fp32 and bf16 (the model cast; bf16 where the hardware has it).

The compile happens in :meth:`CompiledDecodeGenerator.warm_up`, which the backend's build calls:
a trial's compile time is part of its build (and of its budget), and a model that does not
compile (or that ``generate()`` declines to compile) fails the build with the reason. The cache
is sized once (:func:`cache_length`: the longest held-in prompt plus ``max_new_tokens``, rounded
up to :data:`CACHE_BUCKET` and capped at the model's positions), so that prompts of other
lengths reuse the compiled step instead of recompiling it. Saved data-only as the eager torch
winner is (``save_pretrained`` safetensors and JSON); a loaded generator compiles at its first
``generate()``.
"""

from __future__ import annotations

import copy
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from speedster_dist.backends.generate.torch_generate import TorchGenerator

__all__ = [
    "CACHE_BUCKET",
    "CAPABILITIES",
    "CompileSettings",
    "CompiledDecodeGenerator",
    "build_compiled_generator",
    "cache_length",
    "cpp_compiler",
    "load_compiled_generator",
]

PRECISIONS = ("fp32", "bf16")
TECHNIQUE = "static-cache-compiled-decode"
# What GeneratorBackend declares for this backend (data, for its registry line).
CAPABILITIES: dict[str, Any] = {
    "name": "torch-compile-decode",
    "hardware": ("cpu", "gpu"),
    "precisions": PRECISIONS,
    "techniques": (TECHNIQUE,),
    "knobs": {"cuda_graphs": (True, False)},
    "architectures": ("decoder-only", "encoder-decoder"),
}
CACHE_BUCKET = 64
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class CompileSettings:
    """How the decode step is compiled. ``backend``: torch.compile's (inductor)."""

    precision: str = "fp32"
    cuda_graphs: bool = True
    backend: str = "inductor"

    def mode(self, device: str) -> str:
        """CUDA graphs ("reduce-overhead") on a GPU unless turned off; inductor's default
        elsewhere (there are no graphs to replay on a CPU)."""
        if device.startswith("cuda"):
            return "reduce-overhead" if self.cuda_graphs else "max-autotune-no-cudagraphs"
        return "default"


def cpp_compiler() -> str | None:
    """The C++ compiler inductor would use on the CPU (``$CXX``, else g++ / clang++ / c++)."""
    import os

    for name in (os.environ.get("CXX", ""), "g++", "clang++", "c++"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def cache_length(config: Any, prompt_lengths: list[int], max_new_tokens: int) -> int:
    """The static cache's length: the longest prompt plus ``max_new_tokens``, rounded up to
    :data:`CACHE_BUCKET`, at most the model's positions (when its config says); for an
    encoder-decoder, the decoder's start token plus ``max_new_tokens``, rounded up."""
    new = max(1, int(max_new_tokens))
    if getattr(config, "is_encoder_decoder", False):  # the decoder's cache: start + new tokens
        return -(-(new + 1) // CACHE_BUCKET) * CACHE_BUCKET
    needed = max([*prompt_lengths, 1]) + new
    length = -(-needed // CACHE_BUCKET) * CACHE_BUCKET
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    return max(needed, min(length, int(limit))) if limit else length


class CompiledDecodeGenerator(TorchGenerator):
    """:class:`TorchGenerator` on the static cache with its decode step compiled."""

    def __init__(
        self, model: Any, device: str, settings: CompileSettings, max_cache_len: int
    ) -> None:
        super().__init__(model, device, "static")
        self.settings = settings
        self.max_cache_len = int(max_cache_len)
        from transformers import CompileConfig

        config = CompileConfig(
            fullgraph=False, dynamic=False, backend=settings.backend, mode=settings.mode(device)
        )
        if not device.startswith("cuda"):
            # generate() compiles on a GPU only, unless told
            config._compile_all_devices = True  # type: ignore[assignment]
        self.compile_config = config
        self._caches: dict[int, Any] = {}  # batch size -> StaticCache

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        on_token: Any = None,
        **sampling: Any,
    ) -> torch.Tensor:
        sampling.setdefault("compile_config", self.compile_config)
        sampling.setdefault("max_cache_len", self.max_cache_len)
        sampling.setdefault("disable_compile", False)
        cache = self._reusable_cache(input_ids, max_new_tokens, sampling)
        if cache is not None:  # the same tensors every call: CUDA graphs replay, not re-record
            with torch.inference_mode():  # its tensors were made in generate()'s
                cache.reset()
            sampling.update(cache=cache, cache_implementation=None)
            sampling.pop("max_cache_len")  # sized already
        return super().generate(input_ids, attention_mask, max_new_tokens, on_token, **sampling)

    def _reusable_cache(
        self, input_ids: torch.Tensor, max_new_tokens: int, sampling: dict[str, Any]
    ) -> Any:
        """A decoder-only model's static cache of this batch size, kept across calls (None:
        ``generate()`` makes its own: encoder-decoder, beams, a cache given, or too long)."""
        expands = any(int(sampling.get(k) or 1) > 1 for k in ("num_beams", "num_return_sequences"))
        too_long = int(input_ids.shape[-1]) + int(max_new_tokens) > self.max_cache_len
        if "cache" in sampling or expands or too_long or self.model.config.is_encoder_decoder:
            return None
        batch = int(input_ids.shape[0])
        if batch not in self._caches:
            from transformers import StaticCache

            config = self.model.config.get_text_config(decoder=True)
            self._caches[batch] = StaticCache(config=config, max_cache_len=self.max_cache_len)
        return self._caches[batch]

    @property
    def compiled(self) -> bool:
        """Whether ``generate()`` has compiled the decode step (it may decline: a quantized
        or offloaded model, an unsupported cache)."""
        return getattr(self.model, "_compiled_call", None) is not None

    def warm_up(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> float:
        """Compile the decode step (and record its CUDA graph) by generating; the seconds it
        took. Raises with the reason when it does not compile."""
        started = time.perf_counter()
        try:  # 3 new tokens: the first decode step compiles, the next ones record and replay
            self.generate(input_ids, attention_mask, max_new_tokens=3)
        except Exception as exc:
            raise RuntimeError(f"torch.compile of the decode step failed: {exc}") from exc
        if not self.compiled:
            raise RuntimeError("generate() did not compile the decode step for this model")
        return time.perf_counter() - started

    def save(self, folder: Path) -> None:
        """``save_pretrained`` as safetensors: weights (in the searched dtype) and JSON."""
        self.model.save_pretrained(str(folder), safe_serialization=True)

    def options(self) -> dict[str, Any]:
        """What :func:`load_compiled_generator` needs besides the files (JSON-able)."""
        return {
            "precision": self.settings.precision,
            "cuda_graphs": self.settings.cuda_graphs,
            "max_cache_len": self.max_cache_len,
        }


def _prepared(model: Any, device: str, precision: str, copy_first: bool) -> Any:
    if precision not in PRECISIONS:
        raise ValueError(
            f"compiled decode precision must be one of {PRECISIONS}, not {precision!r}"
        )
    if copy_first:  # the source model is shared with other trials: generate() marks it
        model = copy.deepcopy(model)
    return model.to(device=device, dtype=_DTYPES[precision]).eval()


def build_compiled_generator(
    model: Any,
    device: str,
    settings: CompileSettings,
    prompts: list[tuple[torch.Tensor, ...]],
    max_new_tokens: int,
) -> tuple[CompiledDecodeGenerator, float]:
    """A copy of ``model`` in the settings' precision, its decode step compiled on the first
    prompt; the generator and the compile's seconds."""
    if not prompts:
        raise ValueError("compiling the decode step needs at least one prompt")
    lengths = [int(prompt[0].shape[-1]) for prompt in prompts]
    length = cache_length(model.config, lengths, max_new_tokens)
    prepared = _prepared(model, device, settings.precision, copy_first=True)
    generator = CompiledDecodeGenerator(prepared, device, settings, length)
    first = prompts[0]
    mask = first[1] if len(first) > 1 else None
    return generator, generator.warm_up(first[0], mask)


def load_compiled_generator(
    folder: Path, device: str, options: dict[str, Any]
) -> CompiledDecodeGenerator:
    """Open what :meth:`CompiledDecodeGenerator.save` wrote (transformers' class for the
    config's ``model_type``, safetensors only, never remote code); it compiles at its first
    ``generate()``."""
    from speedster_dist.backends.generate.torch_generate import load_torch_generator

    precision = str(options.get("precision", "fp32"))
    settings = CompileSettings(precision, bool(options.get("cuda_graphs", True)))
    model = load_torch_generator(Path(folder), device).model
    prepared = _prepared(model, device, precision, copy_first=False)
    return CompiledDecodeGenerator(prepared, device, settings, int(options["max_cache_len"]))
