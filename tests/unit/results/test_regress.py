import pytest

from speedster_dist.records import TrialStatus
from speedster_dist.results import Comparison, RegressionSettings, compare_run, read_history

from .conftest import DAY0, nightly, run, trial

CPU = "cpu-intel-xeon-avx512vnni-8c"


def verdicts(history, night, **settings):
    rows = read_history(history).to_pylist()
    found = compare_run(rows, f"night-{night}", RegressionSettings(**settings))
    return {(c.role, c.figure): c for c in found}


def test_a_slower_winner_is_flagged_against_its_trailing_median(history):
    for night, p50 in enumerate([0.0040, 0.0041, 0.0039, 0.0040], start=1):
        nightly(history, night, CPU, p50, 0.010)
    nightly(history, 5, CPU, 0.0070, 0.0101)  # +75% for the winner, +1% for the baseline
    found = verdicts(history, 5)
    slow = found[("winner", "latency_p50_s")]
    assert slow.regressed and slow.history == 4
    assert slow.median == pytest.approx(0.00400)
    assert slow.change == pytest.approx(0.75)
    assert slow.candidate == "onnxruntime int8/dynamic"
    assert not found[("baseline", "latency_p50_s")].regressed
    assert found[("winner", "latency_p90_s")].regressed  # p90 moved with it, past +50%
    assert sum(c.regressed for c in found.values()) == 2


def test_the_noisier_p90_has_its_own_threshold(history):
    for night in (1, 2, 3):
        nightly(history, night, CPU, 0.0040, 0.010)
    nightly(history, 4, CPU, 0.0052, 0.010)  # +30%: over 20% for p50, under 50% for p90
    found = verdicts(history, 4)
    assert found[("winner", "latency_p50_s")].regressed
    assert not found[("winner", "latency_p90_s")].regressed
    assert verdicts(history, 4, tail_threshold=0.25)[("winner", "latency_p90_s")].regressed


def test_a_steady_series_is_not_flagged_and_only_the_last_window_counts(history):
    for night, p50 in enumerate([0.0100, 0.0100, 0.0040, 0.0041, 0.0039], start=1):
        nightly(history, night, CPU, p50, 0.010)
    nightly(history, 6, CPU, 0.0046, 0.010)
    found = verdicts(history, 6, window=3)
    winner = found[("winner", "latency_p50_s")]
    assert winner.median == pytest.approx(0.0040) and winner.history == 3
    assert not winner.regressed  # +15% is under the 20% threshold
    assert verdicts(history, 6, window=3, threshold=0.1)[("winner", "latency_p50_s")].regressed
    assert not verdicts(history, 6, window=5)[
        ("winner", "latency_p50_s")
    ].regressed  # median 4.1 -> +12%


def test_latency_is_not_judged_without_enough_history(history):
    nightly(history, 1, CPU, 0.004, 0.010)
    nightly(history, 2, CPU, 0.040, 0.010)  # 10x slower, but a single earlier point
    winner = verdicts(history, 2)[("winner", "latency_p50_s")]
    assert not winner.regressed and "1 earlier of 3 needed" in winner.note
    assert verdicts(history, 2, min_history=1)[("winner", "latency_p50_s")].regressed


def test_a_winner_that_now_fails_is_a_regression_even_with_little_history(history):
    nightly(history, 1, CPU, 0.004, 0.010)
    nightly(history, 2, CPU, None, 0.010, status=TrialStatus.FAILED)
    found = verdicts(history, 2)
    failed = found[("winner", "status")]
    assert failed.regressed and failed.note.startswith("failed: failed: planted")
    assert ("winner", "latency_p50_s") not in found


def test_a_failure_with_no_earlier_success_is_not_a_regression(history):
    nightly(history, 1, CPU, None, 0.010, status=TrialStatus.FAILED)
    assert not verdicts(history, 1)[("winner", "status")].regressed


def test_a_growing_metric_drop_is_flagged(history):
    for night in (1, 2, 3):
        writer = run(history, f"night-{night}", "rebench")
        when = DAY0.replace(day=night + 1)
        writer.append(trial("onnxruntime", "int8", CPU, 0.004, drop=0.010, when=when), "winner")
    writer = run(history, "night-4", "rebench")
    writer.append(
        trial("onnxruntime", "int8", CPU, 0.004, drop=0.030, when=DAY0.replace(day=5)), "winner"
    )
    drop = verdicts(history, 4)[("winner", "metric_drop")]
    assert drop.regressed and drop.median == pytest.approx(0.010)
    assert not verdicts(history, 4, drop_tolerance=0.05)[("winner", "metric_drop")].regressed


def test_series_are_kept_apart_by_learner_hardware_and_role(history):
    for night in (1, 2, 3):
        nightly(history, night, CPU, 0.004, 0.010, learner="a")
        nightly(history, night, "gpu-l4", 0.001, 0.003, learner="a")
    # learner b never ran before: its slow figures have nothing to be compared with.
    nightly(history, 4, CPU, 0.004, 0.010, learner="a")
    nightly(history, 4, CPU, 0.050, 0.100, learner="b")
    found = compare_run(read_history(history).to_pylist(), "night-4")
    assert {(c.learner, c.hardware_type) for c in found} == {("a", CPU), ("b", CPU)}
    assert not any(c.regressed for c in found)


def test_search_trials_never_form_a_series(history):
    writer = run(history, "opt", "optimize")
    writer.append(trial("onnxruntime", "int8", CPU, 0.001))
    nightly(history, 1, CPU, 0.004, 0.010)
    assert compare_run(read_history(history).to_pylist(), "opt") == []


def test_settings_are_validated_and_change_needs_numbers():
    with pytest.raises(ValueError):
        RegressionSettings(threshold=0)
    with pytest.raises(ValueError):
        RegressionSettings(tail_threshold=-1)
    with pytest.raises(ValueError):
        RegressionSettings(window=2, min_history=3)
    empty = Comparison("l", "m", "h", "winner", "c", "status", None, None, 0, False)
    assert empty.change is None
