"""Issue 20, item 11 with the real NNCF int8 on a tiny BERT: calibrated on a few distinct
samples (the guide's way: the same inputs repeated), the int8/nncf candidate misses the
threshold, is retried keeping more MatMuls in float (each retry records why), and the summary
says how many distinct samples calibration saw and how many would help."""

from __future__ import annotations

import pytest

from speedster_dist import optimize_model
from speedster_dist.records import Precision
from speedster_dist.runtime import InlineExecutor
from speedster_dist.testing import models

from .helpers import TINY

pytest.importorskip("nncf")


@pytest.mark.slow  # NNCF builds with their sensitivity ranking
def test_int8_on_few_distinct_samples_is_retried_and_the_summary_says_why():
    distinct = [models.token_batch(seq_len=12, seed=i) for i in range(5)]
    data = [distinct[i % 5] for i in range(20)]  # 5 distinct samples, each 4 times
    learner = optimize_model(
        models.tiny_bert(),
        data,
        metric="cosine",
        metric_drop_ths=1e-5,  # no int8 build of random weights is this close
        ignore_compilers=["torchscript", "torch_compile", "onnxruntime", "tensorrt"],
        executor=InlineExecutor(),
        measure_settings=TINY,
        confirm_rounds=0,
        device="cpu",
        progress=False,
    )
    nncf = [
        r
        for r in learner.results
        if r.candidate.precision is Precision.INT8 and r.candidate.technique == "nncf"
    ]
    layers = [r.candidate.knob_dict["fp_layers"] for r in nncf]
    assert layers[:2] == [1, 2] and all(not r.ok for r in nncf)  # rejected, then retried
    first, retry = nncf[0], nncf[1]
    assert "backoff_after" not in dict(first.extra)
    assert dict(retry.extra)["backoff_after"] == (
        f"{first.candidate.label} dropped {first.metric_drop:.4g} (accepted 1e-05): "
        "more layers in higher precision"
    )
    summary = learner.summary
    assert "int8 was calibrated on 4 distinct sample(s) (of 16 held in)" in summary or (
        "int8 was calibrated on 5 distinct sample(s) (of 16 held in)" in summary
    )
    assert "16 or more distinct, representative samples" in summary
    assert f"{len(nncf) - 1} candidate(s) rejected for their metric drop were retried" in summary
