"""Confirmations on a busy machine: a round whose load did not fit in the machine's cores is
timed again (a bounded number of times); one that stays so leaves the confirmation marked,
its figures never quoted (the summary says why, the search's winner stands)."""

from __future__ import annotations

import math
import os
from dataclasses import replace

import speedster_dist.runtime._confirm as confirm_module
from speedster_dist.present import format_summary
from speedster_dist.records import Candidate
from speedster_dist.runtime import InlineExecutor, SearchRequest, confirm_task, run_search
from speedster_dist.runtime._fresh_worker import RoundTiming
from speedster_dist.search import Budget, SpaceSettings

from .conftest import FAKE_HW, fake_probe

FP32 = Candidate.make("fake", "fp32", FAKE_HW.key, knobs={"slowdown": 1})
FP16 = Candidate.make("fake", "fp16", FAKE_HW.key, knobs={"slowdown": 1})
CORES = os.cpu_count() or 1
# Other processes kept every core busy while a contender was timed on all of them.
BUSY = {"loadavg_before": 2.0 * CORES, "loadavg_after": 2.0 * CORES, "others_cpu_share": 0.8}
QUIET = {"loadavg_before": 0.1, "loadavg_after": 0.1, "others_cpu_share": 0.0, "steal_share": 0.0}


def _checked(payload):
    return replace(payload, measure=replace(payload.measure, load_check=True))


def _plant_load(monkeypatch, busy_rounds: int) -> list[bool]:
    """Each contender's round reads as BUSY for the first ``busy_rounds`` rounds, then QUIET
    (the real timing, a planted load reading); returns whether each round timed was busy."""
    real, seen = confirm_module._time_round, []
    count = {"timings": 0}

    def planted(worker, settings):
        timing = real(worker, settings)
        busy = count["timings"] // 2 < busy_rounds  # two contenders a round
        count["timings"] += 1
        if count["timings"] % 2 == 0:
            seen.append(busy)
        return RoundTiming(timing.p50, dict(BUSY if busy else QUIET))

    monkeypatch.setattr(confirm_module, "_time_round", planted)
    return seen


def test_an_overloaded_round_is_timed_again(fakes, payload, monkeypatch):
    seen = _plant_load(monkeypatch, busy_rounds=1)
    got = confirm_task(_checked(payload), None, FAKE_HW, "n", ((FP32, True), (FP16, False)), 2)
    assert seen == [True, False, False]  # the busy first round was repeated, then 2 kept
    assert got.ok and got.repeated == 1 and not got.reason
    assert [len(e.round_p50s) for e in got.entries] == [2, 2]
    assert dict(got.load)["others_cpu_share"] == 0.0  # the kept rounds' load, not the dropped


def test_a_round_that_stays_overloaded_marks_the_confirmation(fakes, payload, monkeypatch):
    seen = _plant_load(monkeypatch, busy_rounds=100)
    got = confirm_task(_checked(payload), None, FAKE_HW, "n", ((FP32, True), (FP16, False)), 2)
    assert len(seen) == 4 and got.repeated == 2  # repeats bounded by the rounds asked for
    assert not got.ok and "overloaded in 2 of 2 rounds after 2 repeat(s)" in got.reason
    assert "other work kept" in got.reason and "not quoted" in got.reason
    assert dict(got.load)["others_cpu_share"] == 0.8


def test_the_load_check_can_be_off(fakes, payload, monkeypatch):
    seen = _plant_load(monkeypatch, busy_rounds=100)
    got = confirm_task(payload, None, FAKE_HW, "n", ((FP32, True), (FP16, False)), 2)
    assert not payload.measure.load_check and got.ok and got.repeated == 0 and len(seen) == 2


def test_the_summary_quotes_no_confirmed_figure_from_an_overloaded_machine(
    fakes, payload, monkeypatch
):
    _plant_load(monkeypatch, busy_rounds=100)
    settings = SpaceSettings(metric_drop_ths=0.01, tune_knobs=False, baseline_backend="fake")
    request = SearchRequest(
        payload=replace(_checked(payload), metric_drop_ths=0.01),
        settings=settings,
        budget=Budget(math.inf, tune_knobs=False, label="test"),
        confirm_rounds=2,
        confirm_top=1,
    )
    outcome = run_search(InlineExecutor(fake_probe("fake")), request)
    assert FAKE_HW.key not in outcome.confirmed
    assert "overloaded" in outcome.not_confirmed[FAKE_HW.key]
    summary = format_summary(outcome)
    assert "(not confirmed)" in summary and "overloaded" in summary
    assert "x confirmed" not in summary


def test_a_contender_whose_process_dies_leaves_this_one_standing(fakes, payload):
    # A build that kills its process (a segfaulting native library) in the confirmation: only
    # the contender's own process dies; the confirmation says so.
    crash = Candidate.make("fake_deadly", "fp32", FAKE_HW.key, "crash", {"slowdown": 1})
    got = confirm_task(payload, None, FAKE_HW, "n", ((FP32, True), (crash, False)), 2)
    assert not got.ok and got.entries == ()
    assert got.reason == f"{crash.label}: the contender's process died (exit code 17)"


def test_a_trial_timed_on_an_overloaded_machine_is_marked(fakes, payload, monkeypatch):
    import speedster_dist.runtime._trial as trial_module
    from speedster_dist.runtime import OVERLOADED_NOTE, run_trial

    calls: list[tuple[dict[str, float], float]] = []

    def busy(load, cores):
        calls.append((load, cores))
        return "other work kept 2.0 of 2 cores busy while the measurement used 2"

    monkeypatch.setattr(trial_module, "overloaded", busy)
    quiet, _ = run_trial(payload, FP16, FAKE_HW)  # the check is off in these settings
    assert quiet.ok and OVERLOADED_NOTE not in quiet.notes and not calls
    noisy, _ = run_trial(_checked(payload), FP16, FAKE_HW)
    assert noisy.ok and noisy.notes == (OVERLOADED_NOTE,)
    ((load, cores),) = calls
    assert load == dict(noisy.extra) and cores == CORES  # the load the trial recorded
