"""What a generation trial adds to :func:`~speedster_dist.runtime._trial.run_trial`: its
guard and its token-level measures (docs/generation.md).

The guard: on every held-out prompt, the fraction of the original's greedy tokens the
candidate generates identically at the same position over ``max_new_tokens`` (agreement),
and the cosine of the prefill's next-token logits; the drop is the larger of ``1 -
agreement`` and ``1 - cosine``, judged against the threshold as any metric drop is. The
trial's latency is one whole greedy ``generate()`` (``Compiled.run_on_device``), timed as any
call; the measures here add time to first token, time per output token, tokens a second and
the KV cache's size.
"""

from __future__ import annotations

from typing import Any

import torch

from speedster_dist.measure import (
    generation_stats,
    generation_timings,
    kv_cache_mb,
    sequence_agreement,
)
from speedster_dist.records import Candidate
from speedster_dist.runtime._payload import FP32_TOLERANCE, TrialPayload
from speedster_dist.serving import GenerationStats

__all__ = ["judge_generation", "measure_generation"]


def _start(payload: TrialPayload, sample: tuple[Any, ...]) -> int:
    """Where the generated tokens begin: after the prompt, or after the decoder's start."""
    if payload.source.task == "text2text-generation":
        return 1
    return int(sample[0].shape[-1])


def _cosine(reference: torch.Tensor, logits: torch.Tensor) -> float:
    ref, got = reference.float().reshape(reference.shape[0], -1), logits.float().cpu()
    got = got.reshape(got.shape[0], -1)
    return float(torch.nn.functional.cosine_similarity(ref, got, dim=-1).mean())


def judge_generation(
    compiled: Any, payload: TrialPayload, candidate: Candidate
) -> tuple[float, str, float, float]:
    """(drop, why it is over the limit or "", agreement, prefill cosine) on the held-out
    prompts."""
    assert payload.reference_tokens is not None
    count = payload.source.max_new_tokens
    agreements, cosines = [], []
    for sample, reference, tokens in zip(
        payload.validation, payload.reference_outputs, payload.reference_tokens, strict=True
    ):
        generated = compiled.generate(*sample, max_new_tokens=count)
        agreements.append(sequence_agreement(tokens, generated, _start(payload, sample), count))
        cosines.append(_cosine(reference[0], compiled(*sample)[0]))
    agreement = sum(agreements) / len(agreements)
    cosine = sum(cosines) / len(cosines)
    drop = max(1.0 - agreement, 1.0 - cosine, 0.0)
    limit = max(payload.metric_drop_ths or 0.0, FP32_TOLERANCE)
    if candidate.precision.is_reduced:
        limit = payload.metric_drop_ths or 0.0
    if drop > limit:
        why = (
            f"generation drop {drop:.4g} (greedy agreement {agreement:.3f}, prefill cosine "
            f"{cosine:.4f}) is over the accepted {limit:.4g}"
        )
        return drop, why, agreement, cosine
    return drop, "", agreement, cosine


def measure_generation(
    compiled: Any, payload: TrialPayload, agreement: float, cosine: float
) -> GenerationStats:
    """TTFT, TPOT (p50, p99) and tokens/s of greedy generations on the first held-out
    prompt (batch as given; 1 by default), and the cache's size at the end of one."""
    sample = payload.validation[0]
    count = payload.source.max_new_tokens

    def generate(on_token: Any) -> Any:
        return compiled.generate(*sample, max_new_tokens=count, on_token=on_token)

    timings = generation_timings(generate, count, payload.measure)
    config = getattr(payload.source.module, "config", None)
    batch = int(sample[0].shape[0])
    positions = _start(payload, sample) + count  # the cache's length at the last step
    return generation_stats(
        timings, count, agreement, cosine, kv_cache_mb(config, positions, batch)
    )
