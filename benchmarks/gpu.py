"""GPU benchmark: BERT-base (random weights, built from its config), sequence 128, batch 1 and 32.

Eager fp32 (TF32 off) against every GPU candidate this machine can run, searched through the
in-process executor (no Ray, no Optuna needed), for ``metric_drop_ths=None`` (fp32 only:
CUDA graphs and fusion) and ``0.05`` (TF32, fp16, bf16 too). Backends whose library is
missing (TensorRT, onnxruntime-gpu, ...) are listed as skipped with the reason.

    python benchmarks/gpu.py                  # both batches, both thresholds
    python benchmarks/gpu.py --batch 1 --budget 60
    python benchmarks/gpu.py --device cpu --tiny --budget 30   # smoke test without a GPU
    python benchmarks/gpu.py --throughput     # BERT-base throughput at p99 <= 10 ms

``--generate`` (``benchmarks/_gpu_generate.py``) times GPT-2 124M decoding (random weights,
a 32-token prompt, ``--new-tokens`` greedy tokens) with its decode step compiled with CUDA
graphs (the ``generate_torch_compile`` generator) against eager ``generate()`` on the same GPU,
in this process with torch and transformers only:

    python benchmarks/gpu.py --generate               # GPT-2: CUDA graphs vs eager generate()
    python benchmarks/gpu.py --generate --device cpu --tiny   # smoke test without a GPU

``--throughput`` searches ``objective="throughput"`` over batch sizes up to 256 and 1, 2 or 4
calls in flight (CUDA streams on a GPU) under ``--p99-ms`` (default 10), eager fp32 and every
candidate at each load point, and prints each hardware type's frontier (throughput against
p99) with the eager side's best feasible point beside the winner's.

Prints a table per run and writes JSON to ``--out`` (default ``benchmarks/results/``).
Every figure comes from one process, measured side by side by the same trial runner.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

SEQ_LEN = 128
SAMPLES = 10  # 8 held-in (calibration) + 2 held-out for the accuracy guard
THRESHOLDS: tuple[float | None, ...] = (None, 0.05)
THROUGHPUT_BATCHES = (1, 8, 32, 64, 128, 256)
THROUGHPUT_CONCURRENCY = (1, 2, 4)


def _machine(device: str) -> str:
    import torch

    if device == "gpu" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor})"
    return platform.processor() or platform.machine()


def _bert(tiny: bool) -> Any:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    if tiny:
        config = BertConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128
        )
    else:
        config = BertConfig()  # bert-base-uncased's shape: 12 layers, hidden 768, 110M weights
    return BertModel(config).eval()


def _samples(batch: int, vocab: int) -> list[dict[str, Any]]:
    import torch

    generator = torch.Generator().manual_seed(batch)
    return [
        {
            "input_ids": torch.randint(1000, vocab, (batch, SEQ_LEN), generator=generator),
            "attention_mask": torch.ones(batch, SEQ_LEN, dtype=torch.long),
        }
        for _ in range(SAMPLES)
    ]


def _search(
    model: Any,
    data: Any,
    ths: float | None,
    device: str,
    budget_s: float,
    load: dict[str, Any] | None = None,
) -> Any:
    """One search with every knob tuned (default configs first) within ``budget_s``;
    ``load``: the objective and its constraints (``objective="throughput"``, ...)."""
    from speedster_dist.options import parse_run_options
    from speedster_dist.prepare import prepare
    from speedster_dist.runtime import InlineExecutor, SearchRequest, run_search
    from speedster_dist.search import Budget

    options = parse_run_options(
        metric_drop_ths=ths,
        metric="numeric_precision",
        device=device,
        extras={"searcher": "exhaustive", **(load or {})},
    )
    prepared = prepare(model, data, options, None, None, None)
    payload = prepared.payload
    request = SearchRequest(
        payload=payload,
        settings=options.space_settings(payload.source),
        budget=Budget(budget_s, tune_knobs=True, label=f"{budget_s:g}s, knobs tuned"),
        make_searcher=options.searcher_factory(payload.source.fingerprint),
        devices=options.devices,
    )
    return run_search(InlineExecutor(), request)


def _rows(outcome: Any) -> list[dict[str, Any]]:
    baseline = next((r for r in outcome.results if r.is_baseline and r.latency), None)
    eager = baseline.latency.p50 if baseline else None
    rows = []
    for result in outcome.results:
        p50 = result.latency.p50 if result.latency else None
        rows.append(
            {
                "candidate": result.candidate.label,
                "hardware_type": result.candidate.hardware_key,
                "status": result.status.value,
                "p50_ms": p50 * 1e3 if p50 else None,
                "p90_ms": result.latency.p90 * 1e3 if result.latency else None,
                "speedup": eager / p50 if eager and p50 else None,
                "metric_drop": result.metric_drop,
                "build_s": round(result.build_s, 2),
                "reason": result.reason,
            }
        )
    return rows


def _frontier_rows(outcome: Any) -> list[dict[str, Any]]:
    """Every measured load point (feasible or not) of every hardware type, eager included."""
    rows = []
    for result in outcome.results:
        stats = result.throughput
        if stats is None:
            continue
        rows.append(
            {
                "candidate": result.candidate.label,
                "eager": result.is_baseline,
                "hardware_type": result.candidate.hardware_key,
                "status": result.status.value,
                "batch": stats.point.batch_size,
                "concurrency": stats.point.concurrency,
                "throughput": stats.throughput,
                "p99_ms": stats.p99_s * 1e3,
                "memory_mb": result.memory.candidate_mb if result.memory else None,
                "metric_drop": result.metric_drop,
                "reason": result.reason,
            }
        )
    return rows


def _best_feasible(rows: list[dict[str, Any]], eager: bool) -> dict[str, Any] | None:
    feasible = [r for r in rows if r["status"] == "complete" and r["eager"] == eager]
    return max(feasible, key=lambda r: r["throughput"]) if feasible else None


def _throughput_run(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    """BERT throughput at p99 <= ``args.p99_ms``: the searched winner against eager's best."""
    batches = [b for b in THROUGHPUT_BATCHES if b <= args.max_batch]
    data = _samples(1, model.config.vocab_size)  # a request is one sample; batches tile them
    load = {
        "objective": "throughput",
        "batch_sizes": batches,
        "concurrency": list(THROUGHPUT_CONCURRENCY),
        "latency_budget_ms": args.p99_ms,
    }
    started = time.monotonic()
    outcome = _search(model, data, 0.05, args.device, args.budget, load)
    rows = _frontier_rows(outcome)
    print(f"\n=== throughput at p99 <= {args.p99_ms:g} ms (metric_drop_ths=0.05) ===")
    print(f"{'candidate':50} {'b':>4} {'c':>2} {'req/s':>9} {'p99 ms':>8} {'status':10}")
    for row in sorted(rows, key=lambda r: -r["throughput"]):
        print(
            f"{row['candidate'][:50]:50} {row['batch']:>4} {row['concurrency']:>2} "
            f"{row['throughput']:>9.0f} {row['p99_ms']:>8.2f} {row['status']:10}"
        )
    winner, eager = _best_feasible(rows, False), _best_feasible(rows, True)
    ratio = winner["throughput"] / eager["throughput"] if winner and eager else None
    if winner:
        print(f"winner: {winner['candidate']} {winner['throughput']:.0f} req/s", end="")
        print(f", {ratio:.2f}x eager's best feasible" if ratio else " (eager: none feasible)")
    return {
        "p99_budget_ms": args.p99_ms,
        "batch_sizes": batches,
        "concurrency": list(THROUGHPUT_CONCURRENCY),
        "wall_s": round(time.monotonic() - started, 1),
        "winner": winner,
        "eager_best": eager,
        "ratio": ratio,
        "points": rows,
    }


def _print_table(title: str, rows: list[dict[str, Any]], skipped: list[str]) -> None:
    print(f"\n=== {title} ===")
    print(f"{'candidate':58} {'status':9} {'p50 ms':>9} {'speedup':>8} {'drop':>9}")
    for row in sorted(rows, key=lambda r: (r["p50_ms"] is None, r["p50_ms"] or 0.0)):
        p50 = f"{row['p50_ms']:.3f}" if row["p50_ms"] else "-"
        speedup = f"{row['speedup']:.2f}x" if row["speedup"] else "-"
        drop = f"{row['metric_drop']:.2e}" if row["metric_drop"] is not None else "-"
        print(f"{row['candidate'][:58]:58} {row['status']:9} {p50:>9} {speedup:>8} {drop:>9}")
        if row["reason"]:
            print(f"    {row['reason'][:150]}")
    for line in sorted(skipped):
        print(f"skipped {line}")


def _best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    done = [r for r in rows if r["status"] == "complete" and r["speedup"]]
    return max(done, key=lambda r: r["speedup"]) if done else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, action="append", help="default: 1 and 32")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per search")
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer BERT (smoke test)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--throughput", action="store_true", help="throughput at a p99 budget")
    parser.add_argument("--p99-ms", type=float, default=10.0, help="the p99 budget (ms)")
    parser.add_argument("--max-batch", type=int, default=256, help="largest batch tried")
    parser.add_argument("--generate", action="store_true", help="GPT-2 decode, CUDA graphs")
    parser.add_argument("--new-tokens", type=int, default=64, help="--generate's length")
    parser.add_argument("--reps", type=int, default=5, help="--generate's timed generations")
    args = parser.parse_args(argv)

    import torch

    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": _machine(args.device),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "model": "bert-base (random weights)" if not args.tiny else "tiny bert",
        "runs": [],
    }
    if args.device == "gpu" and not torch.cuda.is_available():
        report["skipped"] = "no CUDA device visible to torch: nothing to measure"
        print(report["skipped"])
    elif args.generate:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import _gpu_generate

        device = "cuda" if args.device == "gpu" else "cpu"
        report["generate"] = _gpu_generate.run(device, args.tiny, args.new_tokens, args.reps)
        report["model"] = report["generate"]["model"]
        _gpu_generate.print_rows(report["generate"])
    elif args.throughput:
        report["throughput"] = _throughput_run(_bert(args.tiny), args)
    else:
        model = _bert(args.tiny)
        for batch in args.batch or [1, 32]:
            data = _samples(batch, model.config.vocab_size)
            for ths in THRESHOLDS:
                started = time.monotonic()
                outcome = _search(model, data, ths, args.device, args.budget)
                rows = _rows(outcome)
                skipped = sorted({line for per in outcome.skipped.values() for line in per})
                title = f"batch {batch}, seq {SEQ_LEN}, metric_drop_ths={ths}"
                _print_table(title, rows, skipped)
                best = _best(rows)
                report["runs"].append(
                    {
                        "batch": batch,
                        "metric_drop_ths": ths,
                        "wall_s": round(time.monotonic() - started, 1),
                        "best": best,
                        "skipped": skipped,
                        "candidates": rows,
                    }
                )
                if best:
                    print(f"best: {best['candidate']} {best['speedup']:.2f}x eager fp32")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
