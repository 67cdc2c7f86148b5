"""Generation measures: tokens a second, time to first token, time per output token, the
greedy agreement of two token sequences and the KV cache's size.

The generator runs the loop; this module only watches it, through the ``on_token`` observer
every generation backend accepts (called as soon as each new token is chosen), so that no
backend times itself.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from speedster_dist.measure._latency import MeasureSettings
from speedster_dist.serving import GenerationStats

__all__ = [
    "TOKEN_TIMED_RUNS",
    "generation_stats",
    "generation_timings",
    "kv_cache_mb",
    "sequence_agreement",
]

# Generations timed token by token (after one warm-up): enough for a p99 of the per-token
# times (each generation gives max_new_tokens - 1 of them), few enough to stay cheap.
TOKEN_TIMED_RUNS = 5


def sequence_agreement(reference: Any, generated: Any, start: int, new_tokens: int) -> float:
    """The fraction of ``reference``'s ``new_tokens`` generated tokens (from position
    ``start`` on, every row) that ``generated`` has at the same position; a token it lacks
    (it stopped early) counts as different."""
    ref = np.asarray(reference)[:, start : start + new_tokens]
    got = np.asarray(generated)[:, start : start + new_tokens]
    if ref.size == 0:
        return 1.0
    width = min(ref.shape[1], got.shape[1])
    same = int((ref[:, :width] == got[:, :width]).sum()) if width else 0
    return same / ref.size


def generation_timings(
    generate: Callable[[Callable[[Any, Any], None]], Any],
    new_tokens: int,
    settings: MeasureSettings,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, float, float, float]:
    """(TTFT p50, TPOT p50, TPOT p99, tokens/s) of ``generate(on_token)`` (one generation
    that calls ``on_token`` per new token), over :data:`TOKEN_TIMED_RUNS` generations after
    ``settings.warmup_calls`` (at least one) warm-up generations."""
    for _ in range(max(1, min(settings.warmup_calls, 2))):
        generate(lambda _token, _logits: None)
    first: list[float] = []
    gaps: list[float] = []
    produced, total = 0, 0.0
    for _ in range(TOKEN_TIMED_RUNS):
        stamps: list[float] = []
        start = clock()
        generate(_stamper(stamps, clock))
        end = clock()
        if not stamps:
            continue
        first.append(stamps[0] - start)
        gaps.extend(b - a for a, b in itertools.pairwise(stamps))
        produced += len(stamps)
        total += end - start
    if not first:
        raise RuntimeError("the generator produced no token while timed")
    tpot = gaps or [0.0]
    p50, p99 = (float(v) for v in np.percentile(tpot, [50, 99]))
    return float(np.median(first)), p50, p99, produced / total if total > 0 else 0.0


def _stamper(stamps: list[float], clock: Callable[[], float]) -> Callable[[Any, Any], None]:
    def on_token(_token: Any, _logits: Any) -> None:
        stamps.append(clock())

    return on_token


def kv_cache_mb(config: Any, tokens: int, batch: int = 1, bytes_per_value: int = 4) -> float:
    """The self-attention KV cache of ``tokens`` positions (keys and values, every decoder
    layer, fp32 by default), from a Hugging Face config; 0.0 when it does not say."""
    layers = _first(config, "num_decoder_layers", "n_layer", "num_hidden_layers", "num_layers")
    heads = _first(config, "num_key_value_heads", "n_head", "num_attention_heads", "num_heads")
    head_dim = _first(config, "head_dim", "d_kv")
    if not head_dim:
        width = _first(config, "n_embd", "hidden_size", "d_model")
        full_heads = _first(config, "n_head", "num_attention_heads", "num_heads")
        head_dim = width // full_heads if width and full_heads else 0
    values = 2 * layers * heads * head_dim * tokens * batch
    return values * bytes_per_value / 2**20


def _first(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 0


def generation_stats(
    timings: tuple[float, float, float, float],
    new_tokens: int,
    agreement: float,
    cosine: float,
    kv_mb: float,
) -> GenerationStats:
    """The record of what was measured (weights filled in once the files are saved)."""
    ttft, tpot50, tpot99, rate = timings
    return GenerationStats(new_tokens, ttft, tpot50, tpot99, rate, agreement, cosine, 0.0, kv_mb)
