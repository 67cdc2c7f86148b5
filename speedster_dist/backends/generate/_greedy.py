"""The decode loop shared by the ONNX Runtime and OpenVINO generators.

A backend supplies one step: ``step(input_ids, attention_mask, position_ids) -> logits of the
last position`` (a float tensor [batch, vocab]); the step keeps its own cache. The loop runs the
prefill on the prompt, then one token per step, as Hugging Face ``generate()`` does: greedy by
default, or sampling (temperature, top-k, top-p, in that order) with ``do_sample=True``. Finished
rows (an EOS produced) continue with the pad token, and the loop stops when every row is done.
An EOS id outside the model's vocabulary (a tiny test config keeping GPT-2's 50256) is ignored.
Left-padded batches work: positions come from the attention mask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# Called after each new token with (token ids [batch], the logits it was chosen from): how
# ``measure`` clocks the first token and each next one, and reads the prefill's logits.
TokenObserver = Callable[[torch.Tensor, torch.Tensor], None]

SAMPLING_ARGS = frozenset({"do_sample", "temperature", "top_k", "top_p", "generator"})


def eos_ids(config: Any, vocab_size: int) -> frozenset[int]:
    """The config's EOS ids that lie inside the vocabulary."""
    eos = getattr(config, "eos_token_id", None)
    items: Iterable[Any] = eos if isinstance(eos, (list, tuple)) else [eos]
    return frozenset(int(i) for i in items if i is not None and 0 <= int(i) < vocab_size)


def pad_id(config: Any, eos: frozenset[int]) -> int:
    """The pad token: the config's, else the smallest EOS, else 0."""
    pad = getattr(config, "pad_token_id", None)
    if pad is not None:
        return int(pad)
    return min(eos) if eos else 0


def check_sampling(sampling: dict[str, Any]) -> None:
    """Reject generation arguments the loop does not implement (an error, not a no-op)."""
    unknown = set(sampling) - SAMPLING_ARGS
    if unknown:
        raise ValueError(
            f"unsupported generation arguments {sorted(unknown)}; "
            f"this backend supports {sorted(SAMPLING_ARGS)}"
        )


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of each token (0 at a row's first real token; pads get 1, as HF does)."""
    positions = mask.long().cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 1)


def next_token(logits: torch.Tensor, sampling: dict[str, Any]) -> torch.Tensor:
    """Greedy argmax, or a sample after temperature / top-k / top-p warping."""
    if not sampling.get("do_sample", False):
        return logits.argmax(-1)
    scores = logits.float() / float(sampling.get("temperature", 1.0) or 1.0)
    top_k = sampling.get("top_k")
    if top_k:
        kth = torch.topk(scores, min(int(top_k), scores.shape[-1])).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    top_p = sampling.get("top_p")
    if top_p is not None and float(top_p) < 1.0:
        ordered, order = scores.sort(descending=False)
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = cumulative <= 1 - float(top_p)
        drop[..., -1:] = False
        scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = scores.softmax(-1)
    return torch.multinomial(probs, 1, generator=sampling.get("generator")).squeeze(-1)


def decode(
    step: Step,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    max_new_tokens: int,
    config: Any,
    on_token: TokenObserver | None = None,
    **sampling: Any,
) -> torch.Tensor:
    """Generate up to ``max_new_tokens`` tokens; returns prompt and new tokens, as HF does.

    ``on_token`` (optional) sees each new token and its logits as soon as it is chosen."""
    check_sampling(sampling)
    ids = input_ids.long()
    mask = torch.ones_like(ids) if attention_mask is None else attention_mask.long()
    logits = step(ids, mask, positions_from_mask(mask))
    eos = eos_ids(config, logits.shape[-1])
    pad = pad_id(config, eos)
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    pieces = [ids]
    for index in range(max_new_tokens):
        token = next_token(logits, sampling)
        token = torch.where(done, torch.full_like(token, pad), token)
        pieces.append(token.unsqueeze(-1))
        if on_token is not None:
            on_token(token, logits)
        if eos:
            done |= torch.isin(token, torch.tensor(sorted(eos)))
        if bool(done.all()) or index == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        position = (mask.sum(-1, keepdim=True) - 1).long()
        logits = step(token.unsqueeze(-1), mask, position)
    return torch.cat(pieces, dim=-1)
