"""``optimize_model(..., history=...)`` in-process: every trial lands in the history as it
finishes, with the run's metadata, and a search that dies half-way keeps what finished."""

import json

import pytest
import torch

from speedster_dist import optimize_model
from speedster_dist.backends._registry import EXTRA_BACKENDS_ENV
from speedster_dist.measure import MeasureSettings
from speedster_dist.records import TrialResult
from speedster_dist.results import HistoryTarget, read_history
from speedster_dist.runtime import InlineExecutor
from speedster_dist.testing.fakes import FAKE_BACKENDS
from speedster_dist.testing.models import tiny_mlp

FAST = MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=5, min_duration_s=0.0)
ONLY_FAKES = ["torchscript", "torch_compile", "onnxruntime", "openvino", "tensorrt", "fake_deadly"]


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setenv(EXTRA_BACKENDS_ENV, FAKE_BACKENDS)


def _search(history, executor=None, **kwargs):
    data = [torch.randn(1, 16) for _ in range(5)]
    return optimize_model(
        tiny_mlp(),
        data,
        metric_drop_ths=0.05,
        ignore_compilers=ONLY_FAKES,
        measure_settings=FAST,
        progress=False,
        searcher="exhaustive",
        history=history,
        executor=executor or InlineExecutor(),
        **kwargs,
    )


def test_every_trial_is_recorded_with_the_run(fakes, tmp_path):
    learner = _search(tmp_path / "h")
    rows = read_history(tmp_path / "h").to_pylist()
    assert len(rows) == len(learner.results)
    recorded = sorted((r["backend"], r["precision"], r["technique"], r["status"]) for r in rows)
    searched = sorted(
        (r.candidate.backend, r.candidate.precision.value, r.candidate.technique, r.status.value)
        for r in learner.results
    )
    assert recorded == searched
    assert {r["run_kind"] for r in rows} == {"optimize"} and len({r["run_id"] for r in rows}) == 1
    assert {r["model_name"] for r in rows} == {"Sequential"}
    assert len(rows[0]["model_fingerprint"]) > 8
    settings = json.loads(rows[0]["settings"])
    assert settings["metric_drop_ths"] == 0.05 and settings["metric"] == "numeric_precision"
    assert [r["role"] for r in rows if r["is_baseline"]] == ["baseline"]


def test_a_named_target_and_its_progress_callback(fakes, tmp_path):
    seen: list[TrialResult] = []
    target = HistoryTarget(tmp_path / "h", "sweep-1", "sweep", "mlp", "mlp-fast", seen.append)
    learner = _search(target)
    rows = read_history(tmp_path / "h").to_pylist()
    assert len(seen) == len(rows) == len(learner.results)
    assert {(r["run_id"], r["run_kind"], r["model_name"], r["learner"]) for r in rows} == {
        ("sweep-1", "sweep", "mlp", "mlp-fast")
    }


class DiesAfter(InlineExecutor):
    """Runs ``trials`` trials, then the driver is killed (Ctrl-C) while polling."""

    def __init__(self, trials):
        super().__init__()
        self.left = trials

    def poll(self, timeout_s):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return super().poll(timeout_s)


def test_a_search_that_dies_keeps_the_trials_that_finished(fakes, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path / "h", executor=DiesAfter(3))
    rows = read_history(tmp_path / "h").to_pylist()
    assert len(rows) == 3 and rows[0]["is_baseline"]


def test_brief_measurements_mark_the_run_as_quick(fakes, tmp_path):
    assert FAST.brief and MeasureSettings.quick().brief and not MeasureSettings().brief
    _search(tmp_path / "h")
    assert {r["quick_measure"] for r in read_history(tmp_path / "h").to_pylist()} == {True}
