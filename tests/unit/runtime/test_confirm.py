"""Confirmed winners: the baseline and the best candidates re-timed side by side after the
search, in alternating rounds, on a node of their hardware type (in-process and through the
Ray executor's stand-in); the confirmed fastest wins; a failed confirmation loses nothing."""

from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Any

import pytest

import speedster_dist.runtime._confirm as confirm_module
from speedster_dist.measure import MeasureSettings
from speedster_dist.present import format_summary
from speedster_dist.records import (
    Candidate,
    Confirmation,
    ConfirmedLatency,
    TrialResult,
)
from speedster_dist.runtime import (
    Executor,
    InlineExecutor,
    SearchRequest,
    confirm_task,
    run_search,
)
from speedster_dist.runtime._confirm import round_settings
from speedster_dist.runtime.ray import RayExecutor
from speedster_dist.search import Budget, SpaceSettings

from .conftest import FAKE_HW, fake_probe
from .test_executors import A, FakeRay, Ref, _fake_ray, _hw

UNLIMITED = Budget(math.inf, tune_knobs=False, label="test")
FP32 = Candidate.make("fake", "fp32", FAKE_HW.key, knobs={"slowdown": 1})
FP16 = Candidate.make("fake", "fp16", FAKE_HW.key, knobs={"slowdown": 1})
SLOW_FP16 = Candidate.make("fake", "fp16", FAKE_HW.key, knobs={"slowdown": 4})  # 8 ms


def test_round_settings_share_one_trial_measurement():
    trial = MeasureSettings(warmup_calls=5, warmup_s=0.5, min_calls=64, min_duration_s=2.0)
    first, later = (round_settings(trial, 4, first=f) for f in (True, False))
    assert (first.warmup_calls, first.warmup_s) == (5, 0.5)  # the first round warms up
    assert (later.warmup_calls, later.warmup_s) == (1, 0.0)
    assert later.min_calls * 4 == 64 and later.min_duration_s * 4 == pytest.approx(2.0)
    assert round_settings(trial, 100, first=False).min_calls == 3  # never a one-call median


def test_contenders_are_timed_in_alternating_order(fakes, payload, monkeypatch):
    seen: list[Any] = []
    real = confirm_module._time_round

    def spy(worker, settings):
        seen.append(worker.pid)
        return real(worker, settings)

    monkeypatch.setattr(confirm_module, "_time_round", spy)
    contenders = ((FP32, True), (FP16, False), (SLOW_FP16, False))
    got = confirm_task(payload, None, FAKE_HW, "node-1", contenders, 3)
    assert got.ok and got.rounds == 3 and got.node_id == "node-1" and got.repeated == 0
    ids = {pid: i for i, pid in enumerate(dict.fromkeys(seen))}
    assert [ids[pid] for pid in seen] == [0, 1, 2, 2, 1, 0, 0, 1, 2]
    # Each contender was built and timed in a fresh process of its own, not in this one.
    pids = [e.pid for e in got.entries]
    assert len(set(pids)) == 3 and os.getpid() not in pids and set(pids) == set(seen)
    assert [len(e.round_p50s) for e in got.entries] == [3, 3, 3]
    fp32, fp16, slow = (got.of(c) for c, _ in contenders)
    assert fp32 is not None and fp16 is not None and slow is not None
    assert fp32 is got.baseline and fp32.is_baseline
    # Sleeps of 2 and 8 ms on top of the same model: 6 ms apart, even on a busy machine.
    assert fp16.p50 < slow.p50 and fp16.low <= fp16.p50 <= fp16.high
    fast, slower = got.speedup(FP16), got.speedup(SLOW_FP16)
    assert fast is not None and slower is not None
    assert fast[0] > slower[0] and fast[1] <= fast[2]
    assert {k for k, _ in got.load} >= {"loadavg_before", "loadavg_after"}


def test_a_contender_that_no_longer_builds_means_not_confirmed(fakes, payload):
    broken = Candidate.make("fake_faulty", "fp32", FAKE_HW.key, "raise", {"slowdown": 1})
    got = confirm_task(payload, None, FAKE_HW, "node-1", ((FP32, True), (broken, False)), 2)
    assert not got.ok and got.entries == ()
    assert broken.label in got.reason and "planted build failure" in got.reason


def search(payload, executor, rounds=3, **kw):
    payload = replace(payload, metric_drop_ths=0.01)
    settings = SpaceSettings(metric_drop_ths=0.01, tune_knobs=True, baseline_backend="fake")
    request = SearchRequest(
        payload=payload, settings=settings, budget=UNLIMITED, confirm_rounds=rounds, **kw
    )
    return run_search(executor, request)


def _search_ranking(outcome):
    """The complete candidates of the search (not the baseline), fastest first."""
    done = [r for r in outcome.results if r.ok and not r.is_baseline]
    return [r.candidate for r in sorted(done, key=lambda r: r.latency.p50)]


def _search_best(outcome):
    """What the search alone picked: the fastest complete trial, the baseline included."""
    return min((r for r in outcome.results if r.ok), key=lambda r: r.latency.p50).candidate


def test_the_search_winner_is_confirmed_and_the_summary_says_so(fakes, payload):
    outcome = search(payload, InlineExecutor(fake_probe("fake")), rounds=3, confirm_top=2)
    confirmation = outcome.confirmed[FAKE_HW.key]
    assert confirmation.ok and confirmation.rounds == 3
    # The baseline and the two fastest of the search.
    contenders = [e.candidate for e in confirmation.entries]
    assert contenders == [FP32, *_search_ranking(outcome)[:2]]
    winner = outcome.winners[FAKE_HW.key].candidate
    assert winner == min(confirmation.entries, key=lambda e: e.p50).candidate
    summary = format_summary(outcome)
    assert "improvement (confirmed)" in summary and "3 alternating rounds" in summary
    ratio, low, high = confirmation.speedup(winner)
    assert f"{ratio:.2f}x ({low:.2f}-{high:.2f})" in summary


class Planted(InlineExecutor):
    """Confirms with planted figures (or fails), to check what the driver makes of them."""

    def __init__(self, fastest: Candidate | None, fail: str = "") -> None:
        super().__init__(fake_probe("fake"))
        self.fastest, self.fail = fastest, fail
        self.asked: list[list[str]] = []

    def confirm(self, hardware, contenders, rounds):
        self.asked.append([c.label for c, _ in contenders])
        if self.fail == "raise":
            raise ConnectionError("the cluster went away")
        if self.fail:
            return Confirmation(hardware.key, (), rounds, "n", self.fail)
        fastest = self.fastest or contenders[-1][0]  # default: the slowest in the search
        entries = tuple(
            ConfirmedLatency(c, b, (0.001,) * rounds if c == fastest else (0.005,) * rounds)
            for c, b in contenders
        )
        return Confirmation(hardware.key, entries, rounds, "n")


def test_a_candidate_confirmed_slower_than_another_loses_its_place(fakes, payload):
    executor = Planted(None)  # the last contender (the search's third) is confirmed fastest
    outcome = search(payload, executor)
    ranking = _search_ranking(outcome)
    assert executor.asked == [[FP32.label, *(c.label for c in ranking[:3])]]
    third = ranking[2]
    assert outcome.winners[FAKE_HW.key].candidate == third  # the search's winner lost
    assert outcome.saved[FAKE_HW.key].files  # the files kept are the confirmed winner's
    assert outcome.confirmed[FAKE_HW.key].speedup(third)[0] == pytest.approx(5.0)


@pytest.mark.parametrize("fail", ["raise", "lost: the node died"])
def test_a_failed_confirmation_keeps_the_search_results(fakes, payload, fail):
    outcome = search(payload, Planted(None, fail))
    # The search's winner stands.
    assert outcome.winners[FAKE_HW.key].candidate == _search_best(outcome)
    assert FAKE_HW.key not in outcome.confirmed
    why = outcome.not_confirmed[FAKE_HW.key]
    assert ("the cluster went away" in why) if fail == "raise" else why == fail
    summary = format_summary(outcome)
    assert "improvement (not confirmed)" in summary and "search figures" in summary
    assert all(isinstance(r, TrialResult) for r in outcome.results) and len(outcome.results) > 3


def test_confirmation_off_and_an_executor_that_cannot_confirm(fakes, payload):
    off = search(payload, Planted(FP32), rounds=0)
    assert off.confirmed == {} and off.not_confirmed == {}
    assert "confirmed" not in format_summary(off)

    class Old(InlineExecutor):  # an executor that cannot re-time: the protocol's default
        confirm = Executor.confirm

    old = search(payload, Old(fake_probe("fake")))
    assert "cannot re-time" in old.not_confirmed[FAKE_HW.key]
    assert old.winners[FAKE_HW.key].candidate == _search_best(old)


class ConfirmingRay(FakeRay):
    """The Ray stand-in, also running confirmation tasks (for real, in this process)."""

    def _run(self, task: Any) -> None:
        if task.fn is not confirm_task:
            return super()._run(task)
        task.done = True
        args = tuple(self.get(a) if isinstance(a, Ref) else a for a in task.args)
        assert args[-1] == task.options["num_cpus"]  # the node reserved whole, as a trial
        task.values = (confirm_task(*args),)


def _ray_executor(ray, payload):
    executor = RayExecutor(trial_timeout_s=60, refresh_s=0, ray_api=ray)
    executor.discover()
    executor.prepare(payload)
    return executor


def test_the_ray_executor_confirms_in_one_task_on_a_node_of_the_type(fakes, payload):
    ray = ConfirmingRay(_fake_ray(a1=A).nodes_spec)
    executor = _ray_executor(ray, payload)
    fp32, fp16 = (Candidate.make("fake", p, A, knobs={"slowdown": 1}) for p in ("fp32", "fp16"))
    got = executor.confirm(_hw(A), ((fp32, True), (fp16, False)), 2)
    assert got.ok and got.node_id == "a1"
    (task,) = [t for t in ray.tasks if t.fn is confirm_task]
    assert task.node_id == "a1" and task.options["name"] == f"confirm:{A}"
    assert task.options["decorator"] == {"max_calls": 1}  # a fresh Ray worker for it too
    assert executor._pool.free_node(A) == "a1"  # released afterwards


def test_a_confirmation_whose_node_is_gone_says_why(fakes, payload):
    ray = ConfirmingRay(_fake_ray(a1=A).nodes_spec)
    executor = _ray_executor(ray, payload)
    ray.nodes_spec["a1"]["dead"] = True  # gone between the search and its confirmation
    fp32 = Candidate.make("fake", "fp32", A, knobs={"slowdown": 1})
    got = executor.confirm(_hw(A), ((fp32, True),), 2)
    assert not got.ok and got.reason
