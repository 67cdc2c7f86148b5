"""The driver with the Optuna searcher, on fake backends of known latencies (inline executor).

The fake fp32 takes 4 ms a call, fp16 2 ms; the ``slowdown`` knob multiplies by 1, 2 or 4.
At ``metric_drop_ths=0.01`` the space is fake x {fp32, fp16} x slowdown: 6 configs, and the
known best is fp16 with slowdown=1.
"""

import itertools
import math
import time
from dataclasses import replace

import optuna
import pytest
import torch

from speedster_dist.measure import MeasureSettings
from speedster_dist.records import TrialStatus
from speedster_dist.runtime import (
    BUDGET_EXHAUSTED,
    InlineExecutor,
    SearchHooks,
    SearchRequest,
    run_search,
)
from speedster_dist.search import PRUNE_MARGIN, Budget, OptunaSearcher, SpaceSettings

from .conftest import FAKE_HW, fake_probe

UNLIMITED = Budget(math.inf, tune_knobs=True, label="test")
# Long enough that a 16 ms config is provably slow after 8 calls, short enough for a unit test.
TIMING = MeasureSettings(
    warmup_calls=1, warmup_s=0, min_calls=16, min_duration_s=0.1, load_check=False
)
BEST = "fake fp16 slowdown=1"


class Interrupted(Exception):
    """Stands for the driver process dying after some trials."""


def optuna_search(payload, storage=None, resume=False, budget=UNLIMITED, searchers=None, **kw):
    payload = replace(payload, metric_drop_ths=0.01, measure=TIMING)
    settings = SpaceSettings(metric_drop_ths=0.01, tune_knobs=True, baseline_backend="fake")

    def make(hardware, space):
        searcher = OptunaSearcher(space, storage=storage, name="study", resume=resume)
        if searchers is not None:
            searchers.append(searcher)
        return searcher

    executor = InlineExecutor(fake_probe("fake"))
    request = SearchRequest(
        payload=payload, settings=settings, budget=budget, make_searcher=make, **kw
    )
    return run_search(executor, request)


def slowdown(result):
    return result.candidate.knob_dict["slowdown"]


def test_slow_configs_are_pruned_and_the_known_best_wins(fakes, payload):
    searchers: list[OptunaSearcher] = []
    outcome = optuna_search(payload, searchers=searchers)
    results = outcome.results
    assert outcome.winners[FAKE_HW.key].candidate.label == BEST
    assert results[0].is_baseline and results[0].ok  # fp32 slowdown=1, never pruned
    assert len({r.candidate for r in results}) == len(results) == 6  # all, each once
    for r in results:
        if slowdown(r) == 4:  # 16 ms (fp32) and 8 ms (fp16): over any bar of 4.4 ms or less
            assert r.status is TrialStatus.PRUNED, r
            assert r.latency.count < TIMING.min_calls
            assert "cannot beat the best" in r.reason
    study = searchers[0].study
    pruned = study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    assert len(pruned) >= 2 and all(t.intermediate_values for t in pruned)
    winner = outcome.winners[FAKE_HW.key].latency.p50
    assert 0.002 <= winner < 0.004 * PRUNE_MARGIN
    assert outcome.saved[FAKE_HW.key].files


def test_the_budget_stops_the_search_within_one_trial(fakes, payload):
    ends = []
    budget = Budget(0.5, tune_knobs=True, label="0.5s")
    started = time.monotonic()
    outcome = optuna_search(
        payload,
        budget=budget,
        hooks=SearchHooks(on_result=lambda r: ends.append((r, time.monotonic() - started))),
    )
    assert outcome.budget_exhausted
    measured = [(r, t) for r, t in ends if r.reason != BUDGET_EXHAUSTED]
    cancelled = [r for r, _ in ends if r.reason == BUDGET_EXHAUSTED]
    # The inline executor runs one trial at a time: the one running when time ran out
    # finishes; the one submitted next is cancelled and recorded FAILED; nothing else starts.
    assert len(cancelled) == 1 and cancelled[0].status is TrialStatus.FAILED
    assert ends[-1][0] is cancelled[0]
    assert 1 <= len(measured) < 6  # the baseline at least; never the whole space
    assert len([t for _, t in measured if t > budget.seconds]) <= 1
    times = [0.0] + [t for _, t in measured]
    longest = max(b - a for a, b in itertools.pairwise(times))
    assert outcome.wall_s <= budget.seconds + longest + 0.1
    assert outcome.winners[FAKE_HW.key].ok  # the best found so far is kept


def test_a_killed_search_resumes_without_repeating_completed_trials(fakes, payload, tmp_path):
    seen = []

    def die_after_three(result):
        seen.append(result)
        if len(seen) == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        optuna_search(payload, storage=tmp_path, hooks=SearchHooks(on_result=die_after_three))
    first = {r.candidate: r for r in seen}
    previous_best = min((r for r in seen if r.ok), key=lambda r: r.latency.p50).candidate

    outcome = optuna_search(payload, storage=tmp_path, resume=True)
    again = [r.candidate for r in outcome.results]
    baseline = next(r.candidate for r in seen if r.is_baseline)
    remeasured = list(dict.fromkeys([baseline, previous_best]))  # both first, once each
    assert again[: len(remeasured)] == remeasured
    assert set(again) & set(first) == {baseline, previous_best}  # nothing else repeated
    assert len(set(again) | set(first)) == 6
    assert outcome.winners[FAKE_HW.key].candidate.label == BEST


@pytest.mark.slow  # two stored-study searches: ~10 s on 2 cores
def test_optimize_model_resumes_a_stored_study(fakes, tmp_path):
    from speedster_dist import optimize_model
    from speedster_dist.testing.models import tiny_mlp

    data = [((torch.randn(1, 16),), i % 4) for i in range(5)]
    kwargs = dict(
        executor=InlineExecutor(fake_probe("torch", "fake")),
        measure_settings=TIMING,
        progress=False,
        device="cpu",
        metric_drop_ths=0.01,
        study_storage=tmp_path,
        optimization_time=1e9,  # a number above the constrained budget: knobs are tuned
    )
    first = optimize_model(tiny_mlp(), data, **kwargs)
    # Eager torch (microseconds) is the baseline and the winner. The fake defaults
    # (slowdown=1) are timed in full; every other fake config is pruned.
    assert len(first.results) == 7  # torch + fake x {fp32, fp16} x slowdown {1, 2, 4}
    for r in first.results[1:]:
        expected = TrialStatus.COMPLETE if slowdown(r) == 1 else TrialStatus.PRUNED
        assert r.status is expected, r
    assert len(list(tmp_path.glob("*.journal"))) == 1
    second = optimize_model(tiny_mlp(), data, resume=True, **kwargs)
    # Resumed: only the baseline, which is also the previous best, is measured again.
    assert [r.candidate.label for r in second.results] == ["torch fp32"]
    third = optimize_model(tiny_mlp(), data, **kwargs)  # resume=False: starts over
    assert len(third.results) == 7


def test_searcher_extras_are_validated_before_any_trial():
    from speedster_dist import optimize_model
    from speedster_dist.errors import InputError
    from speedster_dist.testing.models import tiny_mlp

    data = [((torch.randn(1, 16),), 0)]
    with pytest.raises(InputError, match="searcher must be one of"):
        optimize_model(tiny_mlp(), data, executor=InlineExecutor(), searcher="random")
    with pytest.raises(InputError, match="search_seed must be an int"):
        optimize_model(tiny_mlp(), data, executor=InlineExecutor(), search_seed="0")


def _optimize_mlp(storage, **extra):
    from speedster_dist import optimize_model
    from speedster_dist.testing.models import tiny_mlp

    model = tiny_mlp()
    model.name_or_path = "org/tiny-mlp"  # type: ignore[assignment]  # as a Hugging Face model
    data = [((torch.randn(1, 16),), i % 4) for i in range(5)]
    executor = InlineExecutor(fake_probe("torch", "fake"))
    return optimize_model(
        model,
        data,
        executor=executor,
        measure_settings=TIMING,
        progress=False,
        device="cpu",
        metric_drop_ths=0.01,
        study_storage=storage,
        **extra,
    )


def test_optimize_model_writes_a_readable_study_to_an_sqlite_url(fakes, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = _optimize_mlp("sqlite:///tmp.db")
    (name,) = optuna.get_all_study_names("sqlite:///tmp.db")
    assert name.startswith(f"org/tiny-mlp-{FAKE_HW.key}-")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'tmp.db'}")
    assert study.metric_names == ["p50_latency_s"]
    assert study.user_attrs["model"] == "org/tiny-mlp"
    assert len(study.trials) == len(first.results)
    complete = [r.latency.p50 for r in first.results if r.status is TrialStatus.COMPLETE]
    assert study.best_value == min(complete)
    second = _optimize_mlp("sqlite:///tmp.db", resume=True)  # only the baseline again
    assert [r.candidate.label for r in second.results] == ["torch fp32"]


def test_a_damaged_journal_stops_the_search_before_any_trial(fakes, tmp_path):
    from speedster_dist.search import StudyStorageError

    path = tmp_path / "studies.journal"
    _optimize_mlp(path)
    records = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([records[0], b'{"op_code": 4, "tri\n', *records[1:]]))
    with pytest.raises(StudyStorageError, match=f"journal {path} is damaged at line 2"):
        _optimize_mlp(path, resume=True, history=tmp_path / "history")
    assert not list(tmp_path.glob("history/**/*.parquet"))  # no trial ran
