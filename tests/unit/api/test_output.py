"""What ``optimize_model`` prints: the summary by default, every trial with ``verbose=True``,
nothing with ``verbose=False`` (progress included); warnings go through ``warnings`` and the
rest through ``logging`` whatever it prints."""

from __future__ import annotations

import logging

import pytest
import torch

from speedster_dist import optimize_model
from speedster_dist.errors import InputError
from speedster_dist.runtime import InlineExecutor
from speedster_dist.testing.models import tiny_mlp

from .helpers import SLOW_BACKENDS, TINY

SUMMARY_ROW = "latency (p50 per batch)"


def run(samples=6, **kwargs):
    torch.manual_seed(0)
    data = [((torch.randn(1, 16),), i % 4) for i in range(samples)]
    return optimize_model(
        tiny_mlp(),
        data,
        executor=InlineExecutor(),
        ignore_compilers=SLOW_BACKENDS,
        measure_settings=TINY,
        device="cpu",
        **kwargs,
    )


def test_verbose_false_prints_nothing_but_warns_and_logs(capsys, caplog):
    caplog.set_level(logging.INFO, logger="speedster_dist")
    with pytest.warns(UserWarning, match="Give at least 5 representative samples"):
        learner = run(samples=3, verbose=False, progress=True)  # progress too: nothing
    assert capsys.readouterr() == ("", "")
    assert SUMMARY_ROW in learner.summary  # kept on the learner all the same
    logged = [r.getMessage() for r in caplog.records if r.name == "speedster_dist.api"]
    assert any(m.startswith("optimizing ") for m in logged)
    assert any(m.startswith("search over: ") for m in logged)


def test_by_default_the_summary_is_printed_and_verbose_adds_every_trial(capsys):
    learner = run(progress=False)
    out, err = capsys.readouterr()
    assert SUMMARY_ROW in out and err == ""
    assert "reason" not in out  # the trial table's column
    run(progress=False, verbose=True)
    out, _ = capsys.readouterr()
    assert SUMMARY_ROW in out and out.count(learner.results[0].candidate.backend) > 1
    assert "reason" in out


def test_verbose_is_a_boolean_or_none():
    with pytest.raises(InputError, match="verbose must be True, False or None, got 'false'"):
        run(verbose="false")
