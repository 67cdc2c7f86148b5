"""A saved learner checked in a fresh process, next to the eager model it came from.

The child process loads the learner and the original MiniLM, then times both side by side
(``rounds`` alternating rounds, like the search's confirmation) and, when held-out samples are
given, compares their mean-pooled sentence embeddings (cosine, padded tokens left out). Used by
``minilm.py --fresh`` and ``anytime.py``: the summary's confirmed speedup is checked against it.
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
from speedster_dist.measure import MeasureSettings, measure_latency
learner = load_model(sys.argv[1], trust_code=True)
model = AutoModel.from_pretrained(sys.argv[2]).eval()
sample = torch.load(sys.argv[3])
held = torch.load(sys.argv[4])
rounds_wanted = int(sys.argv[5])
settings = MeasureSettings(warmup_calls=5, warmup_s=0.5, min_calls=32, min_duration_s=1.0)
calls = {"learner": lambda: learner(**sample), "eager": lambda: model(**sample)}
rounds = {k: [] for k in calls}
with torch.inference_mode():
    for r in range(rounds_wanted):
        for name in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
            rounds[name].append(measure_latency(calls[name], settings).p50)
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
print(json.dumps({
    "learner_p50_s": statistics.median(rounds["learner"]),
    "eager_p50_s": statistics.median(rounds["eager"]),
    "speedup": statistics.median(ratios),
    "speedup_low": min(ratios),
    "speedup_high": max(ratios),
    "rounds": rounds_wanted,
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
