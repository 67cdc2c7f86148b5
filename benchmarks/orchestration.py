"""Orchestration efficiency: how close the distributed search gets to the ideal T/N.

A synthetic backend with a known build time and a known per-call latency (it sleeps, so
the figures are about scheduling, not about this machine's cores) is searched on 1, 2, 4
and 8 simulated nodes of one hardware type (``ray.cluster_utils.Cluster`` on loopback).
For each size it reports the search's wall time against the ideal (the summed time inside
trials divided by the node count) and the efficiency (ideal / wall), then where the rest
went: the scheduling gap per trial (a node's idle time between the end of one trial and
the start of its next: the driver's round trip plus Ray's dispatch), the search's start-up
(discovery, payload, first dispatch) and tail (the last round's imbalance, fetching the
winner), and all of it as node time per trial ((nodes x wall - summed trial time) /
trials). Targets (issue 3): >= 80 % efficiency at 8 nodes, < 50 ms overhead per trial.

Then the per-trial overhead of running a real backend (PyTorch eager, ONNX Runtime) on a
tiny MLP as a Ray task rather than in-process.

    python benchmarks/orchestration.py [--trials 32] [--nodes 1 2 4 8]

Prints a table and writes JSON to ``benchmarks/results/orchestration-<date>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LABEL_TYPE = "cpu-bench"

# -- the synthetic backend (imported by the Ray workers as ``benchmarks.orchestration``) --

BUILD_S = 0.25
LATENCY_S = 0.005


class _SyntheticCompiled:
    """Runs the flat model (microseconds for the MLP) and sleeps the planned latency."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __call__(self, *inputs: Any) -> tuple[Any, ...]:
        import torch

        with torch.inference_mode():
            out = self._module(*inputs)
        time.sleep(LATENCY_S)
        return tuple(out)

    def save(self, directory: Path) -> dict[str, Any]:
        (directory / "synthetic.json").write_text(json.dumps({"latency_s": LATENCY_S}))
        return {"file": "synthetic.json"}


class SyntheticBackend:
    """Known build time, known latency, one knob whose choices are all equally fast."""

    name = "synthetic"

    def __init__(self, variants: int = 256) -> None:
        from speedster_dist.backends import Capability, Knob
        from speedster_dist.records import DeviceKind, Precision

        self.capabilities = (Capability(DeviceKind.CPU, Precision.FP32),)
        self.knobs = (Knob("variant", tuple(range(variants)), frozenset({DeviceKind.CPU})),)

    def unavailable_reason(self, device: Any) -> str | None:
        return None if device.value == "cpu" else "CPU only"

    def build(self, model: Any, calibration: Any, config: Any, workdir: Path) -> Any:
        from speedster_dist.backends._torch_common import require_module

        time.sleep(BUILD_S)
        return _SyntheticCompiled(require_module(model))

    def load(self, directory: Path, options: Mapping[str, Any], device: Any) -> Any:
        from speedster_dist.backends import UnsupportedCandidate

        raise UnsupportedCandidate("the synthetic backend is for benchmarks only")


BACKEND = SyntheticBackend()

# -- the benchmark ----------------------------------------------------------------------------


def _payload(measure: Any) -> Any:
    from speedster_dist.testing.backend_contract import contract_payload

    return contract_payload("mlp", None, measure)


def _gaps(results: Sequence[Any]) -> list[float]:
    """Idle time of each node between one trial's end and its next trial's start."""
    by_node: dict[str, list[Any]] = {}
    for r in results:
        by_node.setdefault(r.node_id, []).append(r)
    gaps = []
    for mine in by_node.values():
        mine.sort(key=lambda r: r.started_at)
        gaps += [b.started_at - a.finished_at for a, b in itertools.pairwise(mine)]
    return gaps


def _search(trials: int, payload: Any) -> dict[str, Any]:
    from speedster_dist.runtime import SearchRequest, run_search
    from speedster_dist.runtime.ray import RayExecutor
    from speedster_dist.search import Budget, ExhaustiveSearcher, SpaceSettings

    settings = SpaceSettings(
        tune_knobs=True,
        baseline_backend="synthetic",
        ignored_backends=frozenset(
            {"torch", "torchscript", "torch_compile", "onnxruntime", "openvino", "tensorrt"}
        ),
    )

    def first(hardware: Any, space: Any) -> ExhaustiveSearcher:
        return ExhaustiveSearcher(list(space)[:trials])

    started = time.time()
    request = SearchRequest(
        payload=payload,
        settings=settings,
        budget=Budget(math.inf, True, "bench"),
        make_searcher=first,
        poll_s=0.5,
    )
    outcome = run_search(RayExecutor(trial_timeout_s=120, refresh_s=2.0), request)
    ended = time.time()
    results = outcome.results
    assert len(results) == trials and all(r.ok for r in results), [r.reason for r in results]
    busy = sum(r.finished_at - r.started_at for r in results)
    gaps = _gaps(results) or [0.0]
    return {
        "wall_s": outcome.wall_s,
        "busy_s": busy,
        "trial_mean_s": busy / trials,
        "nodes_used": len({r.node_id for r in results}),
        "startup_s": min(r.started_at for r in results) - started,
        "tail_s": ended - max(r.finished_at for r in results),
        "gap_ms_median": 1e3 * statistics.median(gaps),
        "gap_ms_mean": 1e3 * statistics.mean(gaps),
        "gap_ms_max": 1e3 * max(gaps),
    }


@contextlib.contextmanager
def _private_ray_tmpdir() -> Iterator[str]:
    """A fresh, short Ray temp root (``RAY_TMPDIR``) while the block runs, removed after.
    ``ray.cluster_utils`` records (then removes) its head's address as the machine's default
    cluster under Ray's temp root, where every ``ray.init(address="auto")`` looks: with a
    root of its own, other Rays stay theirs. Short: Ray's socket paths (< 108 bytes) are
    under it."""
    root = tempfile.mkdtemp(prefix="sdr-", dir="/tmp")
    before = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = root
    try:
        yield root
    finally:
        if before is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = before
        shutil.rmtree(root, ignore_errors=True)


def _scaling(node_counts: Sequence[int], trials: int) -> list[dict[str, Any]]:
    with _private_ray_tmpdir():
        return _scaling_in(node_counts, trials)


def _scaling_in(node_counts: Sequence[int], trials: int) -> list[dict[str, Any]]:
    import ray
    from ray.cluster_utils import Cluster

    from speedster_dist.hardware import HARDWARE_LABEL
    from speedster_dist.measure import MeasureSettings

    payload = _payload(
        MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=10, min_duration_s=0.25)
    )
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    rows = []
    try:
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        nodes = 0
        for count in node_counts:
            while nodes < count:
                cluster.add_node(num_cpus=1, labels={HARDWARE_LABEL: LABEL_TYPE})
                nodes += 1
            _search(count, payload)  # warm-up: a worker with torch imported on every node
            run = _search(trials, payload)
            wall = run["wall_s"]
            ideal = run["busy_s"] / count
            rows.append(
                {
                    "nodes": count,
                    "trials": trials,
                    **run,
                    "ideal_s": ideal,
                    "efficiency": ideal / wall,
                    # All node time not spent in a trial (start-up and tail included).
                    "overhead_ms_per_trial": 1e3 * (count * wall - run["busy_s"]) / trials,
                }
            )
            print(_scaling_row(rows[-1]), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return rows


def _scaling_row(row: Mapping[str, Any]) -> str:
    return (
        f"| {row['nodes']:>5} | {row['trials']:>6} | {row['trial_mean_s'] * 1e3:>8.0f} | "
        f"{row['ideal_s']:>7.2f} | {row['wall_s']:>6.2f} | {row['efficiency'] * 100:>5.1f} % | "
        f"{row['gap_ms_median']:>6.1f} / {row['gap_ms_mean']:>5.1f} | "
        f"{row['startup_s']:>9.2f} | {row['tail_s']:>6.2f} | "
        f"{row['overhead_ms_per_trial']:>11.1f} |"
    )


SCALING_HEADER = (
    "| nodes | trials | trial ms | ideal s | wall s |  eff.   | gap ms med/mean | "
    "start-up s | tail s | all ms/trial |"
)


def _timed_trials(run: Any, reps: int) -> list[float]:
    times = []
    for _ in range(reps + 1):  # the first is a warm-up (imports, export cache)
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times[1:]


def _task_overhead(backends: Sequence[str], reps: int) -> list[dict[str, Any]]:
    """One real trial at a time: in-process run_trial vs the same trial as a Ray task."""
    import ray

    from speedster_dist.hardware import local_hardware
    from speedster_dist.measure import MeasureSettings
    from speedster_dist.records import Candidate
    from speedster_dist.runtime import run_trial
    from speedster_dist.runtime.ray import RayExecutor

    payload = _payload(
        MeasureSettings(warmup_calls=2, warmup_s=0, min_calls=20, min_duration_s=0.2)
    )
    hardware = local_hardware()
    assert hardware is not None
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rows: list[dict[str, Any]] = []
    try:
        executor = RayExecutor(trial_timeout_s=300, refresh_s=60)
        executor.discover()
        executor.prepare(payload)
        for backend in backends:
            candidate = Candidate.make(backend, "fp32", hardware.key)

            def in_process(candidate: Candidate = candidate) -> None:
                result, _ = run_trial(payload, candidate, hardware)
                assert result.ok, result.reason

            def as_task(candidate: Candidate = candidate) -> None:
                executor.submit(candidate, hardware, False)
                outcomes: list[Any] = []
                while not outcomes:
                    outcomes = executor.poll(0.5)
                assert outcomes[0].result.ok, outcomes[0].result.reason

            local = _timed_trials(in_process, reps)
            remote = _timed_trials(as_task, reps)
            rows.append(
                {
                    "backend": backend,
                    "in_process_s": statistics.median(local),
                    "ray_task_s": statistics.median(remote),
                    "overhead_ms": 1e3 * (statistics.median(remote) - statistics.median(local)),
                    "reps": reps,
                }
            )
            row = rows[-1]
            print(
                f"| {backend:<12} | {row['in_process_s'] * 1e3:>10.0f} | "
                f"{row['ray_task_s'] * 1e3:>9.0f} | {row['overhead_ms']:>11.0f} |",
                flush=True,
            )
    finally:
        ray.shutdown()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    print(f"Synthetic trials: build {BUILD_S * 1e3:.0f} ms, {LATENCY_S * 1e3:.0f} ms a call")
    print(SCALING_HEADER)
    scaling = _scaling(args.nodes, args.trials)
    print("\n| backend      | in-process ms | Ray task ms | overhead ms |")
    overhead = _task_overhead(args.backends, args.reps)
    at_max = scaling[-1]
    verdict = {
        "efficiency_at_max_nodes": at_max["efficiency"],
        "scheduling_gap_ms_per_trial_at_max_nodes": at_max["gap_ms_mean"],
        "all_overhead_ms_per_trial_at_max_nodes": at_max["overhead_ms_per_trial"],
        "meets_80_percent": at_max["efficiency"] >= 0.8,
        # Per trial: the idle time of a node between two trials (start-up and the last
        # round's imbalance are per search, reported separately).
        "meets_50_ms_per_trial": at_max["gap_ms_mean"] < 50,
    }
    print(json.dumps(verdict, indent=2))
    report = {
        "benchmark": "orchestration",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "synthetic": {"build_s": BUILD_S, "latency_s": LATENCY_S},
        "scaling": scaling,
        "task_overhead": overhead,
        "verdict": verdict,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"orchestration-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
    return 0


def _prepare_environment() -> None:
    """Before Ray starts: loopback only, and every worker can import this module."""
    from speedster_dist.runtime.ray import LOOPBACK_ENV
    from speedster_dist.testing.registry import backends_environment

    os.environ.update(LOOPBACK_ENV)
    os.environ.update(backends_environment("synthetic=benchmarks.orchestration:BACKEND"))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")


if __name__ == "__main__":
    _prepare_environment()
    sys.exit(main())
