"""Issue 22's targets: ``optimize_model(task=...)``'s learner against Hugging Face ``generate()``.

GPT-2 124M architecture (``GPT2Config()``) and T5-small architecture with SEEDED RANDOM weights
(no package here ships their weights), batch 1, a 32-token prompt (``--prompt``), 64 new
tokens, greedy; the config's EOS is removed so that every side generates exactly 64 tokens.
Each side runs in a fresh process:

1. ``hf``: eager fp32 ``generate()`` with its default cache (the base; run first and last);
2. ``search``: ``optimize_model(model, prompts, task=..., max_new_tokens=64,
   metric_drop_ths=THS)`` on 5 other prompts, trials in-process (the inline executor, same
   trial body as on Ray) with brief timing, the best three re-timed side by side with the
   baseline (``confirm_rounds``, default 2 here); the learner is saved (its search figures
   printed);
3. ``learner``: the saved learner loaded (``load_model``, data only) and its ``generate()``
   timed on the benchmark prompt; greedy agreement against the ``hf`` side's tokens.

    python benchmarks/generation.py [--arch gpt2|t5|both] [--ths 0,0.05] [--reps 3]
        [--confirm-rounds 2] [--prompt 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generation_backends import _model  # the same seeded models

TASKS = {"gpt2": "text-generation", "t5": "text2text-generation"}


# The prompt length (--prompt), handed to the children through their environment.
PROMPT_ENV = "SPEEDSTER_BENCH_PROMPT_TOKENS"


def _prompt(vocab: int, seed: int = 7) -> Any:
    import torch

    length = int(os.environ.get(PROMPT_ENV, "32"))
    return torch.randint(0, vocab, (1, length), generator=torch.Generator().manual_seed(seed))


def _timed(generate: Any, prompt: Any, new: int, reps: int) -> dict[str, Any]:
    generate(prompt, 4)  # warm-up
    times, out = [], None
    for _ in range(reps):
        start = time.perf_counter()
        out = generate(prompt, new)
        times.append(time.perf_counter() - start)
    assert out is not None
    return {"tokens_per_s": new / statistics.median(times), "tokens": out[0, -new:].tolist()}


def child_hf(arch: str, new: int, reps: int) -> dict[str, Any]:
    import torch

    model = _model(arch)

    def hf(ids: Any, count: int) -> Any:
        with torch.inference_mode():
            return model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=count,
                min_new_tokens=count,
                do_sample=False,
                pad_token_id=0,
            )

    return _timed(hf, _prompt(model.config.vocab_size), new, reps)


def child_search(arch: str, new: int, ths: float, folder: str, rounds: int) -> dict[str, Any]:
    from speedster_dist import optimize_model
    from speedster_dist.measure import MeasureSettings
    from speedster_dist.runtime import InlineExecutor

    model = _model(arch)
    prompts = [{"input_ids": _prompt(model.config.vocab_size, seed)} for seed in range(5)]
    started = time.perf_counter()
    learner = optimize_model(
        model,
        prompts,
        metric_drop_ths=ths,
        task=TASKS[arch],
        max_new_tokens=new,
        executor=InlineExecutor(),
        measure_settings=MeasureSettings(1, 0.0, 3, 0.0, 20.0),
        confirm_rounds=rounds,  # the best 3 re-timed side by side with the baseline
        device="cpu",
        progress=False,
        verbose=False,
    )
    wall = time.perf_counter() - started
    learner.save(folder)
    (winner,) = learner.entries.values()
    trials = [
        {
            "label": r.candidate.label,
            "status": r.status.value,
            "generate_p50_s": r.latency.p50 if r.latency else None,
            "tokens_per_s": r.generation.tokens_per_s if r.generation else None,
            "agreement": r.generation.agreement if r.generation else None,
            "reason": r.reason[:120],
        }
        for r in learner.results
    ]
    return {"winner": winner.label, "search_s": wall, "trials": trials}


def child_learner(arch: str, new: int, reps: int, folder: str) -> dict[str, Any]:
    from speedster_dist import load_model

    learner = load_model(folder)
    model_vocab = _model(arch).config.vocab_size

    def run(ids: Any, count: int) -> Any:
        return learner.generate(input_ids=ids, max_new_tokens=count)

    return _timed(run, _prompt(model_vocab), new, reps)


def _child(*args: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", *args]
    done = subprocess.run(
        command, stdout=subprocess.PIPE, text=True, check=True, env=dict(os.environ)
    )
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return row


def _agreement(a: list[int], b: list[int]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(b)


def run_arch(arch: str, thresholds: list[float], args: argparse.Namespace) -> list[str]:
    """The markdown rows of one architecture."""
    new, reps = str(args.new), str(args.reps)
    first = _child("hf", arch, new, reps)
    rows = []
    for ths in thresholds:
        with tempfile.TemporaryDirectory() as folder:
            saved = str(Path(folder) / "learner")
            search = _child("search", arch, new, str(ths), saved, str(args.confirm_rounds))
            for trial in search["trials"]:
                print(f"  {arch} ths={ths}: {json.dumps(trial)}", file=sys.stderr, flush=True)
            timed = _child("learner", arch, new, reps, saved)
        rows.append((ths, search, timed))
    last = _child("hf", arch, new, reps)
    base = statistics.median([first["tokens_per_s"], last["tokens_per_s"]])
    lines = [
        f"| {arch} | HF generate() eager fp32 | - | "
        f"{first['tokens_per_s']:.1f} / {last['tokens_per_s']:.1f} | 1.00 | 1.00 | - |"
    ]
    for ths, search, timed in rows:
        lines.append(
            f"| {arch} | {search['winner']} | {ths:g} | {timed['tokens_per_s']:.1f} | "
            f"{timed['tokens_per_s'] / base:.2f} | "
            f"{_agreement(timed['tokens'], first['tokens']):.2f} | {search['search_s']:.0f} s |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs="+")
    parser.add_argument("--arch", choices=["gpt2", "t5", "both"], default="both")
    parser.add_argument("--ths", default="0,0.05", help="metric_drop_ths of each search")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--confirm-rounds", type=int, default=2, help="the search's (0: off)")
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens")
    args = parser.parse_args()
    if not args.child:
        os.environ[PROMPT_ENV] = str(args.prompt)
    if args.child:
        kind, arch, new, *rest = args.child
        if kind == "hf":
            row = child_hf(arch, int(new), int(rest[0]))
        elif kind == "search":
            row = child_search(arch, int(new), float(rest[0]), rest[1], int(rest[2]))
        else:
            row = child_learner(arch, int(new), int(rest[0]), rest[1])
        print(json.dumps(row))
        return
    cpu = next(
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    )
    print(f"CPU: {cpu}; load before: {os.getloadavg()}; prompt {args.prompt}, new {args.new}")
    print(
        "| model | learner's winner | metric_drop_ths | tokens/s | vs HF generate() "
        "| greedy agreement | search |\n|---|---|---|---|---|---|---|"
    )
    thresholds = [float(t) for t in args.ths.split(",") if t]
    for arch in ("gpt2", "t5"):
        if args.arch in (arch, "both"):
            t5_ths = thresholds if arch == "gpt2" else thresholds[:1]
            print("\n".join(run_arch(arch, t5_ths, args)), flush=True)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
