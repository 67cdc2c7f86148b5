"""``benchmarks/gpu.py --generate``: GPT-2 decode with CUDA graphs against eager ``generate()``.

GPT-2 124M architecture (``GPT2Config()``, SEEDED RANDOM weights, EOS removed so every side
generates exactly ``--new-tokens``), batch 1, a 32-token prompt, greedy, on one device, in
this process (torch and transformers only: no Ray, Optuna or OpenVINO). Sides, each timed
``--reps`` times after one warm-up generation (the median is its tokens/s):

- ``eager``: Hugging Face ``generate()`` in eager fp32 with its default cache (the base);
- ``eager-static``: the same with the static cache, eager (``disable_compile``);
- ``compiled``: the ``generate_torch_compile`` generator: static cache, the decode step
  compiled with ``mode="reduce-overhead"`` (CUDA graphs) on a GPU, inductor's default on a CPU;
- ``compiled-no-graphs`` (GPU only): the decode step compiled without CUDA graphs.

Each side's greedy agreement is the fraction of its tokens identical to eager's at the same
position; a compiled side also reports the seconds its compile (and graph capture) took.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

PROMPT_TOKENS = 32


def gpt2(tiny: bool) -> Any:
    """GPT-2 124M's shape (or a 2-layer one), seeded random weights, no EOS."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    if tiny:
        config = GPT2Config(
            n_layer=2, n_head=2, n_embd=64, vocab_size=1000, eos_token_id=None, bos_token_id=None
        )
    else:
        config = GPT2Config(eos_token_id=None, bos_token_id=None)
    return GPT2LMHeadModel(config).eval()


def sides(device: str) -> list[str]:
    """The sides measured on ``device`` ("cuda" or "cpu"), the base first."""
    names = ["eager", "eager-static", "compiled"]
    return [*names, "compiled-no-graphs"] if device == "cuda" else names


def _generator(side: str, model: Any, device: str, prompt: Any, new: int) -> tuple[Any, float]:
    """``(generate(ids, new) -> ids, compile seconds)`` for one side."""
    from speedster_dist.backends.generate.torch_compiled import (
        CompileSettings,
        build_compiled_generator,
    )
    from speedster_dist.backends.generate.torch_generate import TorchGenerator

    if side.startswith("compiled"):
        settings = CompileSettings("fp32", cuda_graphs=side == "compiled")
        compiled, seconds = build_compiled_generator(model, device, settings, [(prompt,)], new)
        return compiled, seconds
    cache = "static" if side == "eager-static" else ""
    return TorchGenerator(model.to(device), device, cache), 0.0


def time_side(
    generator: Any, prompt: Any, new: int, reps: int, sync: Callable[[], None]
) -> tuple[float, list[int]]:
    """(tokens/s of the median generation, the generated tokens) after one warm-up."""
    generator.generate(prompt, None, new)
    times, out = [], None
    for _ in range(max(1, reps)):
        sync()
        started = time.perf_counter()
        out = generator.generate(prompt, None, new)
        sync()
        times.append(time.perf_counter() - started)
    assert out is not None
    return new / statistics.median(times), out[0, -new:].tolist()


def agreement(tokens: list[int], base: list[int]) -> float:
    """Fraction of ``tokens`` identical to ``base`` at the same position."""
    return sum(a == b for a, b in zip(tokens, base, strict=True)) / max(1, len(base))


def run(device: str, tiny: bool, new: int, reps: int) -> dict[str, Any]:
    """Every side of :func:`sides` on ``device``; rows with tokens/s, ratio to eager,
    agreement and compile seconds."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    model = gpt2(tiny)
    prompt = torch.randint(
        0, model.config.vocab_size, (1, PROMPT_TOKENS), generator=torch.Generator().manual_seed(7)
    )
    rows: list[dict[str, Any]] = []
    for side in sides(device):
        try:
            generator, compile_s = _generator(side, model, device, prompt, new)
            rate, tokens = time_side(generator, prompt, new, reps, sync)
        except Exception as exc:  # a side that fails is reported, the others still run
            rows.append({"side": side, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        rows.append({"side": side, "tokens_per_s": rate, "compile_s": compile_s, "tokens": tokens})
    base = rows[0] if "tokens" in rows[0] else None
    for row in rows:
        if base is not None and "tokens" in row:
            row["vs_eager"] = row["tokens_per_s"] / base["tokens_per_s"]
            row["agreement"] = agreement(row["tokens"], base["tokens"])
    return {
        "model": "tiny gpt2" if tiny else "gpt2 124M (random weights)",
        "prompt_tokens": PROMPT_TOKENS,
        "new_tokens": new,
        "reps": reps,
        "rows": rows,
    }


def print_rows(report: dict[str, Any]) -> None:
    """The markdown table of :func:`run`'s rows."""
    print(
        f"\n=== {report['model']}: batch 1, {report['prompt_tokens']}-token prompt, "
        f"{report['new_tokens']} new tokens, greedy ==="
    )
    print("| side | tokens/s | vs eager generate() | greedy agreement | compile s |")
    print("|---|---|---|---|---|")
    for row in report["rows"]:
        if "error" in row:
            print(f"| {row['side']} | failed: {row['error']} | | | |")
            continue
        print(
            f"| {row['side']} | {row['tokens_per_s']:.1f} | {row.get('vs_eager', 0):.2f} "
            f"| {row.get('agreement', 0):.2f} | {row['compile_s']:.1f} |"
        )
