"""A saved learner checked in a fresh process, next to the eager model it came from.

The child process loads the learner and the original MiniLM, then times both side by side
(``rounds`` alternating rounds, like the search's confirmation) and, when held-out samples are
given, compares their mean-pooled sentence embeddings (cosine, padded tokens left out). Used by
``minilm.py --fresh`` and ``anytime.py``: the summary's confirmed speedup is checked against it.

A round in which either side saw more machine load than cores
(:func:`speedster_dist.measure.overloaded`) is timed again, up to ``rounds`` more times; if one
stays so, ``noisy`` says which and ``speedup`` is None: such a ratio is never printed.

``check_fresh_point`` re-measures a saved throughput learner's operating point in a fresh
process (``throughput.py``): the chosen point's p99 as a service loading it sees it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHILD = """
import json, statistics, sys, torch
from transformers import AutoModel
from speedster_dist import load_model
from speedster_dist.measure import LoadWatch, MeasureSettings, measure_latency, overloaded
learner = load_model(sys.argv[1], trust_code=True)
model = AutoModel.from_pretrained(sys.argv[2]).eval()
sample = torch.load(sys.argv[3])
held = torch.load(sys.argv[4])
rounds_wanted = int(sys.argv[5])
settings = MeasureSettings(warmup_calls=5, warmup_s=0.5, min_calls=32, min_duration_s=1.0)
calls = {"learner": lambda: learner(**sample), "eager": lambda: model(**sample)}
rounds = {k: [] for k in calls}
cores = torch.get_num_threads()  # both sides run on every core torch was given
noisy, repeated, r = [], 0, 0
with torch.inference_mode():
    while r < rounds_wanted:
        timed = {}
        for name in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
            watch = LoadWatch().start()
            timed[name] = (measure_latency(calls[name], settings).p50, watch.stop())
        why = {n: w for n, (_, load) in timed.items() if (w := overloaded(load, cores))}
        if why and repeated < rounds_wanted:  # the machine was busy: time the round again
            repeated += 1
            continue
        noisy += [f"round {r + 1}, {n}: {w}" for n, w in why.items()]
        for name, (p50, _) in timed.items():
            rounds[name].append(p50)
        r += 1
    cosines = []
    for s in held:
        weights = s["attention_mask"].unsqueeze(-1).float()
        pooled = []
        for out in (model(**s), learner(**s)):
            # a sentence-transformer's learner returns the token embeddings themselves
            hidden = (out if torch.is_tensor(out) else out[0]).float()
            pooled.append((hidden * weights).sum(1) / weights.sum(1))
        cosines.append(float(torch.nn.functional.cosine_similarity(*pooled).min()))
ratios = [e / l for e, l in zip(rounds["eager"], rounds["learner"])]
# A side timed while other work did not fit in the machine's cores gives no ratio at all.
quoted = not noisy
print(json.dumps({
    "learner_p50_s": statistics.median(rounds["learner"]),
    "eager_p50_s": statistics.median(rounds["eager"]),
    "speedup": statistics.median(ratios) if quoted else None,
    "speedup_low": min(ratios) if quoted else None,
    "speedup_high": max(ratios) if quoted else None,
    "rounds": rounds_wanted,
    "repeated_for_load": repeated,
    "noisy": noisy,
    "min_embedding_cosine": min(cosines) if cosines else None,
}))
"""


def check_fresh(
    learner: Any,
    model_folder: str,
    sample: dict[str, Any],
    held_out: Sequence[dict[str, Any]] = (),
    rounds: int = 5,
) -> dict[str, Any]:
    """Save ``learner``, then time it against eager in a fresh process (see the module)."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "learner"
        learner.save(path)
        torch.save(sample, Path(tmp) / "sample.pt")
        torch.save(list(held_out), Path(tmp) / "held.pt")
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(path),
                model_folder,
                str(Path(tmp) / "sample.pt"),
                str(Path(tmp) / "held.pt"),
                str(rounds),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


POINT_CHILD = """
import json, sys, torch
from speedster_dist import load_model
from speedster_dist.backends import runner_for
from speedster_dist.measure import MeasureSettings, MemoryWatch, measure_load, tile_batch
from speedster_dist.serving import LoadPoint
watch = MemoryWatch().start()
learner = load_model(sys.argv[1], trust_code=True).for_hardware()
samples = torch.load(sys.argv[2])
names = json.loads(sys.argv[3])
settings = MeasureSettings(**json.loads(sys.argv[4]))
percentile = float(sys.argv[5])
point = learner.operating_point()
batch = tile_batch(samples, names, int(point["batch_size"]))
runner = runner_for(learner.compiled, int(point["concurrency"]))
load = LoadPoint.make(int(point["batch_size"]), int(point["concurrency"]), point.get("knobs"))
try:
    stats = measure_load(runner, batch, load, settings, percentile, watch)
finally:
    runner.close()
print(json.dumps({
    "batch_size": load.batch_size,
    "concurrency": load.concurrency,
    "throughput": stats.throughput,
    "p50_ms": stats.p50_s * 1e3,
    "p99_ms": stats.p99_s * 1e3,
    "tail_ms": stats.tail_s * 1e3,
    "calls": stats.calls,
    "overlap": stats.overlap.mechanism,
    "noisy": stats.noisy,
    "load": dict(stats.load),
}))
"""


def check_fresh_point(
    learner_path: str | Path,
    samples: Sequence[tuple[Any, ...]],
    input_names: Sequence[str],
    settings: dict[str, Any],
    percentile: float = 99.0,
) -> dict[str, Any]:
    """Re-measure a saved learner's operating point (its batch size and calls in flight) in
    a fresh process, with ``measure_load`` and ``settings`` (MeasureSettings' fields): the
    throughput and per-request tail a service loading it would see."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        torch.save(list(samples), Path(tmp) / "samples.pt")
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                POINT_CHILD,
                str(learner_path),
                str(Path(tmp) / "samples.pt"),
                json.dumps(list(input_names)),
                json.dumps(settings),
                str(percentile),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures
