"""The summary's generation rows: tokens a second, time to first token, time per output
token, greedy agreement and the prefill's cosine, the KV cache (docs/generation.md)."""

from __future__ import annotations

from speedster_dist.present._format import ms
from speedster_dist.records import TrialResult
from speedster_dist.serving import GenerationStats

__all__ = ["generation_rows"]


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else ""


def _cell(stats: GenerationStats | None, text: str) -> str:
    return text if stats is not None else "n/a"


def generation_rows(base: TrialResult | None, best: TrialResult) -> list[list[str]]:
    """Rows for the summary of a generation search (none when ``best`` measured none)."""
    mine = best.generation
    if mine is None:
        return []
    theirs = base.generation if base is not None else None

    def row(name: str, text: str, base_text: str, ratio: str = "") -> list[str]:
        return [name, _cell(theirs, base_text), text, ratio]

    def tpot(stats: GenerationStats) -> str:
        return f"{ms(stats.tpot_p50_s, decimals=2)} / {ms(stats.tpot_p99_s, decimals=2)}"

    def guard(stats: GenerationStats) -> str:
        return f"{stats.agreement:.3f} / {stats.cosine:.4f}"

    return [
        row(
            f"tokens/s (batch 1, {mine.new_tokens} new)",
            f"{mine.tokens_per_s:.1f}",
            f"{theirs.tokens_per_s:.1f}" if theirs else "",
            _ratio(mine.tokens_per_s, theirs.tokens_per_s if theirs else None),
        ),
        row(
            "time to first token (p50)",
            ms(mine.ttft_p50_s, decimals=2),
            ms(theirs.ttft_p50_s, decimals=2) if theirs else "",
            _ratio(theirs.ttft_p50_s if theirs else None, mine.ttft_p50_s),
        ),
        row(
            "time per output token (p50 / p99)",
            tpot(mine),
            tpot(theirs) if theirs else "",
            _ratio(theirs.tpot_p50_s if theirs else None, mine.tpot_p50_s),
        ),
        row("greedy agreement / prefill cosine", guard(mine), guard(theirs) if theirs else ""),
        row(
            "KV cache at the last token (MB)",
            f"{mine.kv_cache_mb:.2f}",
            f"{theirs.kv_cache_mb:.2f}" if theirs else "",
        ),
    ]
