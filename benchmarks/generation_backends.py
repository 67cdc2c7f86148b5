"""ONNX Runtime, OpenVINO and compiled-decode generators against HF ``generate()`` (eager fp32).

GPT-2 124M architecture (``GPT2Config()``) and T5-small architecture, both with SEEDED RANDOM
weights (no package here ships their weights), batch 1, a 32-token prompt, 64 new tokens, greedy.
The config's EOS is removed so every side generates exactly 64 tokens. Each side runs in a fresh
process (export and compression are not timed; one warm-up generation is), and the table gives
its tokens/s, the ratio to the Hugging Face side and the greedy agreement (fraction of the 64
tokens identical at the same position). Hugging Face runs first and last; its median is the base.
Sides ``tc-*`` are ``generate_torch_compile``'s generator (static cache, the decode step
compiled by torch.compile/inductor), each in a fresh process with an empty inductor cache (so
its "build s", the compile, is a cold one); ``static-fp32`` is the static cache in eager torch.
Sides ``ovort-*`` / ``ortov-*`` are ``generate_split``'s generator: the prefill on OpenVINO and
the decode on ONNX Runtime, or the other way round (GPT-2 only). TTFT is the median time of a
one-token generation (the prefill), TPOT ``(T(new) - T(1)) / (new - 1)`` from the medians;
``--prompt 512`` shows where the two phases favour different backends.

    python benchmarks/generation_backends.py [--reps 3] [--threads 2] [--sides ov-fp32,ort-int8]
        [--prompt 32] [--new 64]
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

GPT2_SIDES = (
    "ov-fp32",
    "ov-bf16",
    "ov-int8",
    "ov-int4",
    "ort-fp32",
    "ort-int8",
    "ort-int4",
    "static-fp32",
    "tc-fp32",
    "tc-bf16",
    "ovort-fp32",
    "ortov-fp32",
    "ovort-int8",
    "ortov-int8",
    "ovort-int4",
)
T5_SIDES = ("ov-fp32", "ort-fp32", "tc-fp32")


def _model(arch: str) -> Any:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    model: Any
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(eos_token_id=None, bos_token_id=None))
    else:
        config = T5Config(pad_token_id=0, eos_token_id=None)  # t5-small shape
        config.decoder_start_token_id = 0
        model = T5ForConditionalGeneration(config)
        with torch.no_grad():  # the default init makes every greedy token 0; spread the weights
            for parameter in model.parameters():
                parameter.normal_(0, 0.05)
    return model.eval()


def _generator(
    side: str, model: Any, folder: Path, threads: int, prompt: Any, new: int = 64
) -> Any:
    if side == "hf":
        import torch

        def hf(ids: Any, new: int) -> Any:
            with torch.inference_mode():
                return model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=new,
                    min_new_tokens=new,
                    do_sample=False,
                    pad_token_id=0,
                )

        return hf
    backend, precision = side.split("-")
    if backend in ("tc", "static"):
        from speedster_dist.backends.generate.torch_compiled import (
            CompileSettings,
            build_compiled_generator,
        )
        from speedster_dist.backends.generate.torch_generate import TorchGenerator

        torch_side: Any = TorchGenerator(model, "cpu", "static")
        if backend == "tc":
            compile_settings = CompileSettings(precision)
            torch_side, _ = build_compiled_generator(
                model, "cpu", compile_settings, [(prompt,)], new
            )
        return lambda ids, new: torch_side.generate(ids, None, new)
    if backend in ("ovort", "ortov"):
        from speedster_dist.backends.generate.split_phases import build_split

        phases = "openvino>onnxruntime" if backend == "ovort" else "onnxruntime>openvino"
        split = build_split(model, folder, phases, precision)
        return lambda ids, new: split.generate(ids, None, new)
    if backend == "ov":
        from speedster_dist.backends.generate.openvino_stateful import (
            OvGenerateSettings,
            build_ov_generator,
        )

        ov = build_ov_generator(
            model, folder, OvGenerateSettings(precision=precision, threads=threads)
        )
        return lambda ids, new: ov.generate(ids, max_new_tokens=new)
    from speedster_dist.backends.generate.onnxruntime_past import (
        OrtGenerateSettings,
        build_ort_generator,
    )

    settings = OrtGenerateSettings(
        precision=precision, threads=threads, block_size=32, accuracy_level=4
    )
    ort = build_ort_generator(model, folder, settings)
    return lambda ids, new: ort.generate(ids, max_new_tokens=new)


def _median_s(generate: Any, prompt: Any, new: int, reps: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(reps):
        start = time.perf_counter()
        out = generate(prompt, new)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def child(
    arch: str, side: str, reps: int, threads: int, new: int, prompt_len: int = 32
) -> dict[str, Any]:
    """One side in this (fresh) process: build, warm up, time ``reps`` generations."""
    import torch

    torch.set_num_threads(threads)
    model = _model(arch)
    prompt = torch.randint(
        0, model.config.vocab_size, (1, prompt_len), generator=torch.Generator().manual_seed(7)
    )
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        generate = _generator(side, model, Path(folder), threads, prompt, new)
        build_s = time.perf_counter() - started  # export, compression or compile
        generate(prompt, 4)
        ttft, _ = _median_s(generate, prompt, 1, reps)
        whole, out = _median_s(generate, prompt, new, reps)
    assert out is not None
    return {
        "side": side,
        "tokens_per_s": new / whole,
        "ttft_ms": ttft * 1e3,
        "tpot_ms": (whole - ttft) / max(1, new - 1) * 1e3,
        "tokens": out[0, -new:].tolist(),
        "build_s": build_s,
    }


def _run(arch: str, side: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", arch, side, f"--reps={args.reps}"]
    command += [f"--threads={args.threads}", f"--new={args.new}", f"--prompt={args.prompt}"]
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as inductor:
        if side.startswith("tc-"):  # a cold compile, as on a fresh node
            env["TORCHINDUCTOR_CACHE_DIR"] = inductor
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, env=env)
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return row


def table(arch: str, sides: list[str], args: argparse.Namespace) -> str:
    """Run HF, the sides, HF again; the markdown rows."""
    first = _run(arch, "hf", args)
    rows = [_run(arch, side, args) for side in sides]
    last = _run(arch, "hf", args)
    base = statistics.median([first["tokens_per_s"], last["tokens_per_s"]])
    hf_rates = f"{first['tokens_per_s']:.1f} / {last['tokens_per_s']:.1f}"
    hf_phases = f"{first['ttft_ms']:.0f} | {first['tpot_ms']:.1f}"
    lines = [f"| {arch} | hf eager fp32 | {hf_rates} | 1.00 | {hf_phases} | 1.00 | - |"]
    for row in rows:
        same = sum(a == b for a, b in zip(row["tokens"], first["tokens"], strict=True)) / len(
            first["tokens"]
        )
        lines.append(
            f"| {arch} | {row['side']} | {row['tokens_per_s']:.1f} "
            f"| {row['tokens_per_s'] / base:.2f} | {row['ttft_ms']:.0f} | {row['tpot_ms']:.1f} "
            f"| {same:.2f} | {row['build_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("ARCH", "SIDE"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens")
    parser.add_argument("--sides", default="")
    parser.add_argument("--arch", choices=["gpt2", "t5", "both"], default="both")
    args = parser.parse_args()
    if args.child:
        arch, side = args.child
        print(json.dumps(child(arch, side, args.reps, args.threads, args.new, args.prompt)))
        return
    cpu = next(
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    )
    print(f"CPU: {cpu}; load before: {os.getloadavg()}; prompt {args.prompt}, new {args.new}")
    print(
        "| model | side | tokens/s | vs HF generate() | TTFT ms | TPOT ms | greedy agreement "
        "| build s |\n|---|---|---|---|---|---|---|---|"
    )
    wanted = [s for s in args.sides.split(",") if s]
    for arch, sides in (("gpt2", GPT2_SIDES), ("t5", T5_SIDES)):
        if args.arch in (arch, "both"):
            print(table(arch, [s for s in sides if not wanted or s in wanted], args), flush=True)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
