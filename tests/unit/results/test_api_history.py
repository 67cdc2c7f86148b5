"""``optimize_model(..., history=...)`` in-process: every trial lands in the history as it
finishes, with the run's metadata, and a search that dies half-way keeps what finished."""

import json

import pytest
import torch

from speedster_dist import optimize_model
from speedster_dist.measure import MeasureSettings
from speedster_dist.records import TrialResult
from speedster_dist.results import HistoryTarget, read_history, render_report
from speedster_dist.runtime import InlineExecutor
from speedster_dist.testing.models import tiny_mlp

from .page import cells

FAST = MeasureSettings(
    warmup_calls=1, warmup_s=0, min_calls=5, min_duration_s=0.0, load_check=False
)
ONLY_FAKES = ["torchscript", "torch_compile", "onnxruntime", "openvino", "tensorrt", "fake_deadly"]


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


def _trials(root):
    """The history's trial rows (not the confirmation's re-timings, role "confirmed")."""
    return [r for r in read_history(root).to_pylist() if r["role"] != "confirmed"]


def test_every_trial_is_recorded_with_the_run(fakes, tmp_path):
    learner = _search(tmp_path / "h")
    rows = _trials(tmp_path / "h")
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
    rows = _trials(tmp_path / "h")
    assert len(seen) == len(rows) == len(learner.results)  # a re-timing is not a trial
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


def _same(row):
    return (row["backend"], row["precision"], row["technique"], row["knobs"])


def _same_entry(entry):
    knobs = json.dumps(dict(entry.knobs), sort_keys=True, default=str)
    return (entry.backend, entry.precision, entry.technique, knobs)


def test_the_confirmation_is_recorded_next_to_the_trials_it_confirms(fakes, tmp_path):
    learner = _search(tmp_path / "h")
    rows = read_history(tmp_path / "h").to_pylist()
    confirmed = [r for r in rows if r["role"] == "confirmed"]
    trials = [r for r in rows if r["role"] != "confirmed"]
    complete = [r for r in trials if r["status"] == "complete" and not r["is_baseline"]]
    # the baseline and the (at most 3) fastest candidates, each once, in the search's run
    assert len(confirmed) == 1 + min(3, len(complete))
    assert len({_same(r) for r in confirmed}) == len(confirmed)
    assert {r["run_id"] for r in confirmed} == {trials[0]["run_id"]}
    timed = {_same(t) for t in trials if t["status"] == "complete"}
    assert all(_same(r) in timed for r in confirmed)
    assert [r["is_baseline"] for r in confirmed].count(True) == 1
    for row in confirmed:
        rounds = json.loads(row["confirm_round_p50s"])
        assert row["confirm_rounds"] == len(rounds) == 5 and row["status"] == "complete"
        assert row["confirm_low_s"] == min(rounds) and row["confirm_high_s"] == max(rounds)
        assert row["latency_p50_s"] == sorted(rounds)[2]  # the median of the round medians
        assert row["latency_p90_s"] is None and row["latency_count"] is None
    # the learner's confirmed figures are the rows' figures
    ((key, entry),) = learner.entries.items()
    mine = next(r for r in confirmed if _same(r) == _same_entry(entry))
    base = next(r for r in confirmed if r["is_baseline"])
    assert mine["latency_p50_s"] == entry.metrics["confirmed_p50_s"]
    assert base["latency_p50_s"] == entry.metrics["confirmed_baseline_p50_s"]
    assert mine["hardware_type"] == key
    assert all(r["confirm_rounds"] is None for r in trials)
    # the report's winner is the learner's, with its confirmed figures
    page = cells(render_report(rows))
    header, shown = page.rows[0], dict(zip(page.rows[0], page.rows[1], strict=True))
    assert len(page.rows) == 2 and "confirmed" in header
    assert (shown["backend"], shown["precision"].split("/")[0]) == (entry.backend, entry.precision)
    assert shown["confirmed"].startswith("re-timed side by side: 5 rounds (")
    assert shown["speed-up"].startswith(f"{entry.metrics['confirmed_speedup']:.2f}x (")


def test_no_confirmation_no_confirmed_rows(fakes, tmp_path):
    learner = _search(tmp_path / "h", confirm_rounds=0)
    rows = read_history(tmp_path / "h").to_pylist()
    assert len(rows) == len(learner.results) and "confirmed" not in {r["role"] for r in rows}
