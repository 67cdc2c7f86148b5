"""The generation baseline: Hugging Face ``generate()`` in eager torch with its default cache.

Every generation candidate's speedup is measured against it. Saved data-only: the model's
``save_pretrained`` files (safetensors and JSON), loaded through transformers' own classes for
the config's ``model_type`` (never remote code).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from speedster_dist.backends.generate._greedy import TokenObserver, eos_ids, pad_id

__all__ = ["TorchGenerator", "load_torch_generator"]


class _Streamer:
    """HF's streamer interface: the first ``put`` is the prompt (or the decoder's start
    tokens), each later one a new token, handed to ``on_token`` (no logits: ``None``)."""

    def __init__(self, on_token: TokenObserver) -> None:
        self.on_token = on_token
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.on_token(value.reshape(-1), None)  # type: ignore[arg-type]

    def end(self) -> None:
        return None


class TorchGenerator:
    """``model.generate()`` greedy by default, sampling arguments passed through.

    ``cache_implementation``: "" for the model's default (dynamic) cache, ``"static"`` for
    Hugging Face's static cache (preallocated), in eager torch: its compiled decode step
    (CUDA graphs on a GPU) is :mod:`.torch_compiled`'s."""

    def __init__(self, model: Any, device: str = "cpu", cache_implementation: str = "") -> None:
        self.model = model.eval()
        self.device = device
        self.cache_implementation = cache_implementation
        config = model.config
        eos = eos_ids(config, int(getattr(config, "vocab_size", 0) or 2**31))
        self.pad_token_id = pad_id(config, eos)

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        on_token: TokenObserver | None = None,
        **sampling: Any,
    ) -> torch.Tensor:
        ids = input_ids.to(self.device)
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask.to(self.device)
        sampling.setdefault("do_sample", False)
        if self.cache_implementation:
            sampling.setdefault("cache_implementation", self.cache_implementation)
            # eager: on a GPU generate() would compile the static cache's decode step by
            # itself; that is the generate_torch_compile backend's candidate (torch_compiled)
            sampling.setdefault("disable_compile", True)
        streamer = _Streamer(on_token) if on_token is not None else None
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                pad_token_id=self.pad_token_id,
                streamer=streamer,
                **sampling,
            )
        return out.cpu()

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The next-token logits of the prompt (``[batch, vocab]``), by one forward pass."""
        ids, mask = input_ids.to(self.device), attention_mask.to(self.device)
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if getattr(self.model.config, "is_encoder_decoder", False):
            from speedster_dist.backends.generate._seq2seq_graph import start_ids

            kwargs["decoder_input_ids"] = start_ids(self.model.config, int(ids.shape[0])).to(
                self.device
            )
        with torch.inference_mode():
            logits = self.model(**kwargs, use_cache=False).logits
        return logits[:, -1, :].float().cpu()

    def save(self, folder: Path) -> None:
        """``save_pretrained`` as safetensors: weights and JSON only."""
        self.model.save_pretrained(str(folder), safe_serialization=True)


def load_torch_generator(
    folder: Path, device: str = "cpu", cache_implementation: str = ""
) -> TorchGenerator:
    """Open what :meth:`TorchGenerator.save` wrote: the class comes from transformers for the
    config's ``model_type``; remote code is refused, weights read from safetensors only."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    folder = Path(folder)
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = auto.from_pretrained(
        str(folder), trust_remote_code=False, use_safetensors=True, local_files_only=True
    )
    return TorchGenerator(model.to(device), device, cache_implementation)  # type: ignore[arg-type]
