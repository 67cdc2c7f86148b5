"""A generator behind the backend contract: what a generation trial builds, times and saves.

:class:`GeneratorCompiled` wraps any object with ``generate(input_ids, attention_mask,
max_new_tokens, on_token=..., **sampling)`` (the ONNX Runtime, OpenVINO and torch
generators). Called like the flat model (``input_ids, attention_mask``) it returns the
prefill's next-token logits (``[batch, vocab]``): the forward pass the accuracy guard compares
by cosine; ``run_on_device`` is one whole ``generate()`` of the search's ``max_new_tokens``
tokens, greedy: what the trial runner and the confirmation time, so that a candidate's "p50"
is the time of one generation and the fastest is the one with the most tokens a second.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from speedster_dist.backends.generate._greedy import TokenObserver

__all__ = ["Generator", "GeneratorCompiled"]


class Generator(Protocol):
    """What each generation backend builds."""

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        **sampling: Any,
    ) -> torch.Tensor: ...


class GeneratorCompiled:
    """``generate()`` plus the Compiled contract (``__call__``, ``run_on_device``, ``save``).

    ``save_files(directory)`` writes the generator's data files; ``prefill`` (optional)
    returns the prefill logits directly (else they are read from a one-token generation);
    ``options`` join the JSON-able load options :meth:`save` returns; ``notes``: short lines
    for the summary (e.g. how long a compile took).
    """

    notes: tuple[str, ...] = ()

    def __init__(
        self,
        generator: Generator,
        max_new_tokens: int,
        save_files: Callable[[Path], Any],
        prefill: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        device: str = "cpu",
        options: dict[str, Any] | None = None,
    ) -> None:
        self.generator = generator
        self.max_new_tokens = max(1, int(max_new_tokens))
        self._save_files = save_files
        self._prefill = prefill
        self.device = device
        self._options = dict(options or {})

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int | None = None,
        on_token: TokenObserver | None = None,
        **sampling: Any,
    ) -> torch.Tensor:
        """Token ids as Hugging Face ``generate()`` returns them (on the CPU)."""
        count = self.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        if count < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens!r}")
        if on_token is not None:
            sampling["on_token"] = on_token
        ids = input_ids.long().cpu()
        mask = attention_mask.long().cpu() if attention_mask is not None else None
        return self.generator.generate(ids, mask, count, **sampling).cpu()

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[Any, ...]:
        """The prefill's next-token logits (float32, ``[batch, vocab]``)."""
        if self._prefill is not None:
            return (self._prefill(input_ids, attention_mask).float().cpu(),)
        seen: list[torch.Tensor] = []
        self.generate(input_ids, attention_mask, 1, on_token=lambda _t, logits: seen.append(logits))
        return (seen[0].float().cpu(),)

    def run_on_device(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One greedy generation of the search's ``max_new_tokens`` tokens (what is timed)."""
        return self.generate(input_ids, attention_mask)

    def save(self, directory: Path) -> dict[str, Any]:
        """The generator's data files; options: the generation length it was searched for."""
        self._save_files(Path(directory))
        return {**self._options, "max_new_tokens": self.max_new_tokens}
