"""The Optuna searcher against a synthetic objective of known latencies (no torch, no trials)."""

import optuna
import pytest

from speedster_dist.records import (
    BackendInfo,
    Candidate,
    Capability,
    DeviceKind,
    HardwareType,
    Knob,
    LatencyStats,
    Precision,
    TrialResult,
    TrialStatus,
)
from speedster_dist.search import (
    BUDGET_EXHAUSTED,
    FILL_IN_AFTER,
    MAX_CONSECUTIVE_DUPLICATES,
    PRUNE_MARGIN,
    OptunaSearcher,
    SpaceSettings,
    derive_space,
)

HW = HardwareType("cpu-test-2c", DeviceKind.CPU, features=frozenset({"avx2"}))
CPU = frozenset({DeviceKind.CPU})


def cap(precision, technique=""):
    return Capability(
        DeviceKind.CPU, Precision(precision), technique, frozenset(), frozenset({"torch"})
    )


CATALOG = (
    BackendInfo("base", (cap("fp32"),)),
    BackendInfo(
        "fast",
        (cap("fp32"), cap("int8", "dynamic")),
        (
            Knob("threads", (0, 1, 2, 4), CPU),
            Knob("fusion", (True, False), CPU),
            Knob("per_channel", (False, True), CPU, frozenset({Precision.INT8})),
        ),
    ),
    BackendInfo(
        "ov",
        (cap("fp32"),),
        (Knob("hint", ("LATENCY", "THROUGHPUT"), CPU), Knob("streams", (0, 1, 2), CPU)),
    ),
)
BEST = "fast int8/dynamic fusion=True per_channel=True threads=2"


def space(tune=True):
    settings = SpaceSettings(metric_drop_ths=0.05, tune_knobs=tune, baseline_backend="base")
    return derive_space(CATALOG, HW, settings)


def latency_of(c: Candidate) -> float:
    """Known p50 (seconds): a unique best, a config that fails, one that is rejected."""
    k = c.knob_dict
    if c.backend == "base":
        return 0.010
    if c.backend == "ov":
        return 0.007 * {"LATENCY": 1.0, "THROUGHPUT": 1.5}[k["hint"]] * (1 + 0.1 * k["streams"])
    ms = 0.006 if c.precision is Precision.FP32 else 0.003
    ms *= {0: 1.0, 1: 1.8, 2: 0.95, 4: 1.3}[k["threads"]] * (0.8 if k["fusion"] else 1.0)
    return ms * (0.9 if k.get("per_channel") else 1.0)


def stats(p50, count=64):
    return LatencyStats(count, p50, 0.0, p50, p50, p50, p50, p50 * count)


def measure(c: Candidate, bar: float | None, baseline: Candidate | None) -> TrialResult:
    is_base = c == baseline
    if c.precision is Precision.INT8 and c.knob_dict["threads"] == 4:
        return TrialResult(c, TrialStatus.FAILED, "build raised", is_baseline=is_base)
    if c.precision is Precision.INT8 and not c.knob_dict["fusion"] and c.knob_dict["threads"] == 1:
        return TrialResult(c, TrialStatus.REJECTED, "metric drop 0.2", metric_drop=0.2)
    p50 = latency_of(c)
    if bar is not None and p50 > bar and not is_base:
        return TrialResult(c, TrialStatus.PRUNED, "pruned", stats(p50, 8))
    return TrialResult(c, TrialStatus.COMPLETE, latency=stats(p50), is_baseline=is_base)


def ask(searcher: OptunaSearcher) -> Candidate:
    """``searcher.ask()`` where the test knows a candidate is left."""
    candidate = searcher.ask()
    assert candidate is not None
    return candidate


def drive(searcher, max_tells=None):
    """The driver's loop with one trial at a time; returns the results in order."""
    results: list[TrialResult] = []
    while max_tells is None or len(results) < max_tells:
        candidate = searcher.ask()
        if candidate is None:
            break
        bar = searcher.prune_bar(candidate)
        results.append(measure(candidate, bar, searcher.space.baseline))
        searcher.tell(results[-1])
    return results


def labels(results):
    return [r.candidate.label for r in results]


def best(results):
    return min((r for r in results if r.ok), key=lambda r: r.latency.p50)


def test_the_space_is_conditional_and_derived_from_the_catalog():
    s = space()
    assert [a.key for a in s.arms] == ["base/fp32/", "fast/fp32/", "fast/int8/dynamic", "ov/fp32/"]
    assert [k.name for k in s.arm("fast/fp32/").knobs] == ["threads", "fusion"]  # no per_channel
    assert s.size == 1 + 8 + 16 + 6 == len(list(s))
    assert space(tune=False).size == 4
    assert s.baseline.label == "base fp32"


def test_default_configs_come_first_baseline_first():
    searcher = OptunaSearcher(space())
    results = drive(searcher, max_tells=4)
    assert labels(results) == [c.label for c in space().defaults()]
    assert labels(results)[0] == "base fp32"
    arms = [f"{c.backend}/{c.precision.value}/{c.technique}" for c in space().defaults()]
    assert [t.params["arm"] for t in searcher.study.trials] == arms


def test_constrained_measures_each_default_once_then_finishes():
    searcher = OptunaSearcher(space(tune=False))
    results = drive(searcher)
    assert sorted(labels(results)) == sorted(c.label for c in space(tune=False).defaults())
    assert searcher.finished() and searcher.ask() is None


def test_no_config_is_measured_twice_and_a_failed_build_is_not_retried():
    searcher = OptunaSearcher(space(), seed=3)
    results = drive(searcher)
    assert len(results) == len(set(labels(results)))
    assert searcher.finished() and searcher.ask() is None
    dups = [t for t in searcher.study.trials if "duplicate_of" in t.user_attrs]
    assert dups, "the sampler proposed measured configs: they were told, not measured"
    failed = {r.candidate.label for r in results if r.status is TrialStatus.FAILED}
    assert failed  # int8 threads=4 raises in build; proposed again, it is never rebuilt
    by_number = {t.number: t for t in searcher.study.trials}
    failed_dups = [
        t for t in dups if by_number[t.user_attrs["duplicate_of"]].user_attrs.get("label") in failed
    ]
    assert all(t.state is optuna.trial.TrialState.FAIL for t in failed_dups)


def test_a_small_space_is_exhausted():
    small = SpaceSettings(tune_knobs=True, baseline_backend="base")
    s = derive_space((CATALOG[0], CATALOG[2]), HW, small)  # base + ov: 1 + 2 x 3 configs
    searcher = OptunaSearcher(s, max_duplicates=1_000)
    results = drive(searcher)
    assert sorted(labels(results)) == sorted(c.label for c in s)
    assert searcher.finished() and searcher.ask() is None


def test_a_sampler_that_repeats_itself_gets_the_untried_configs_in_its_stead():
    searcher = OptunaSearcher(space(), max_duplicates=10_000, patience=None)
    results = drive(searcher)
    assert sorted(labels(results)) == sorted(c.label for c in space())  # every config once
    # At most FILL_IN_AFTER duplicates in a row before an untried config is proposed: the
    # study stays small (without the fill-in, thousands of trials, each read at every ask).
    trials = searcher.study.trials
    assert len(trials) <= space().size * (FILL_IN_AFTER + 1)
    filled = [t for t in trials if t.system_attrs.get("fixed_params") and "label" in t.user_attrs]
    defaults = {c.label for c in space().defaults()}
    assert any(t.user_attrs["label"] not in defaults for t in filled)  # some were filled in


def test_the_default_limit_converges_before_any_fill_in():
    searcher = OptunaSearcher(space(), patience=None)  # MAX_CONSECUTIVE_DUPLICATES
    drive(searcher)
    assert FILL_IN_AFTER >= MAX_CONSECUTIVE_DUPLICATES
    enqueued = [t for t in searcher.study.trials if t.system_attrs.get("fixed_params")]
    assert {t.user_attrs.get("label") for t in enqueued} <= {c.label for c in space().defaults()}


def test_every_outcome_is_told_with_its_state_and_attributes():
    searcher = OptunaSearcher(space())
    asked = [ask(searcher) for _ in range(4)]
    results = [
        TrialResult(asked[0], TrialStatus.COMPLETE, latency=stats(0.01), is_baseline=True),
        TrialResult(asked[1], TrialStatus.PRUNED, "pruned: slow", stats(0.02, 8)),
        TrialResult(asked[2], TrialStatus.REJECTED, "metric drop 0.2", metric_drop=0.2),
        TrialResult(asked[3], TrialStatus.FAILED, "build raised"),
    ]
    for r in results:
        searcher.tell(r)
    complete, pruned, rejected, failed = searcher.study.trials
    state = optuna.trial.TrialState
    assert complete.state is state.COMPLETE and complete.value == 0.01
    assert complete.user_attrs["p50_s"] == 0.01 and complete.user_attrs["is_baseline"]
    assert pruned.state is state.PRUNED and pruned.intermediate_values == {8: 0.02}
    assert pruned.user_attrs["reason"] == "pruned: slow"
    assert rejected.state is state.FAIL and rejected.user_attrs["metric_drop"] == 0.2
    assert rejected.user_attrs["status"] == "rejected"
    assert failed.state is state.FAIL and failed.user_attrs["reason"] == "build raised"
    assert [t.user_attrs["label"] for t in searcher.study.trials] == [c.label for c in asked]


def test_sampled_configs_are_pruned_against_the_best_so_far_defaults_never():
    searcher = OptunaSearcher(space())
    first = ask(searcher)
    assert searcher.prune_bar(first) is None  # nothing measured yet
    searcher.tell(measure(first, None, first))
    defaults = drive(searcher, max_tells=3)  # fast fp32 (4.8 ms), ov, fast int8 defaults
    assert all(r.status is not TrialStatus.PRUNED for r in defaults)
    sampled = ask(searcher)
    assert sampled not in space().defaults()
    best_p50 = best([*defaults]).latency.p50
    assert best_p50 == pytest.approx(0.003 * 0.8)  # fast int8/dynamic, default knobs
    assert searcher.prune_bar(sampled) == pytest.approx(best_p50 * PRUNE_MARGIN)


def test_the_known_best_config_is_found():
    searcher = OptunaSearcher(space())
    results = drive(searcher)
    assert best(results).candidate.label == BEST
    assert searcher.finished()


def test_seeded_runs_are_reproducible():
    first = labels(drive(OptunaSearcher(space(), seed=7), max_tells=15))
    again = labels(drive(OptunaSearcher(space(), seed=7), max_tells=15))
    other = labels(drive(OptunaSearcher(space(), seed=8), max_tells=15))
    assert first == again
    assert first[:4] == other[:4]  # the enqueued defaults do not depend on the seed
    assert first != other


def test_converges_after_consecutive_duplicates():
    searcher = OptunaSearcher(space(), max_duplicates=1, patience=None)
    results = drive(searcher)
    assert searcher.finished() and searcher.ask() is None
    assert len(results) < space().size
    assert "duplicate_of" in searcher.study.trials[-1].user_attrs


def test_stops_after_patience_sampled_configs_without_a_new_best():
    searcher = OptunaSearcher(space(), patience=3, max_duplicates=10_000)
    results = drive(searcher)
    assert searcher.finished() and searcher.ask() is None
    assert len(results) < space().size
    sampled = results[len(space().defaults()) :]
    best_before = best(results[: len(results) - 3]).latency.p50
    assert len(sampled) >= 3
    assert all(not r.ok or r.latency.p50 >= best_before for r in results[-3:])


@pytest.mark.parametrize(("min_improvement", "stops"), [(0.05, True), (0.0, False)])
def test_gains_within_the_noise_do_not_extend_the_search(min_improvement, stops):
    searcher = OptunaSearcher(
        space(), patience=2, max_duplicates=10_000, min_improvement=min_improvement
    )
    drive(searcher, max_tells=len(space().defaults()))
    best_p50 = searcher._best
    assert best_p50 is not None
    for _ in range(2):  # two sampled configs, each 3% faster than the best so far
        candidate = ask(searcher)
        best_p50 *= 0.97
        searcher.tell(TrialResult(candidate, TrialStatus.COMPLETE, latency=stats(best_p50)))
    assert searcher.finished() is stops
    if not stops:  # the pruning bar follows the best p50 itself, however small the gain
        assert searcher.prune_bar(ask(searcher)) == pytest.approx(best_p50 * PRUNE_MARGIN)


def test_a_killed_search_resumes_without_measuring_completed_configs():
    storage = optuna.storages.InMemoryStorage()  # outlives the searchers, like a file would
    first = OptunaSearcher(space(), storage=storage, name="s", resume=True)
    done = drive(first, max_tells=10)
    in_flight = first.ask()  # asked, never told: the process dies while it runs
    del first
    resumed = OptunaSearcher(space(), storage=storage, name="s", resume=True)
    assert resumed.resumed == 10
    again = drive(resumed)
    before = best(done).candidate
    # Re-measured first: the baseline (for the speedup) and the previous best (for its files).
    assert [r.candidate for r in again[:2]] == [space().baseline, before]
    repeated = {r.candidate for r in again[2:]} & {r.candidate for r in done}
    assert not repeated
    assert in_flight in {r.candidate for r in again}  # interrupted: measured again
    assert best(done + again).candidate.label == BEST
    remeasured = [t for t in resumed.study.trials if t.user_attrs.get("remeasure")]
    assert len(remeasured) == 2


def test_resume_false_starts_over(tmp_path):
    drive(OptunaSearcher(space(), storage=tmp_path, name="s"), max_tells=6)
    fresh = OptunaSearcher(space(), storage=tmp_path, name="s", resume=False)
    assert fresh.resumed == 0 and fresh.study.trials == []
    assert labels(drive(fresh, max_tells=4)) == [c.label for c in space().defaults()]


def test_budget_cancelled_trials_are_measured_again_on_resume(tmp_path):
    storage = tmp_path  # a directory: one journal file per study
    first = OptunaSearcher(space(), storage=storage, name="s")
    drive(first, max_tells=2)
    cancelled = ask(first)
    first.tell(TrialResult(cancelled, TrialStatus.FAILED, BUDGET_EXHAUSTED))
    resumed = OptunaSearcher(space(), storage=storage, name="s", resume=True)
    assert resumed.resumed == 2
    baseline, fast = space().defaults()[:2]  # fast fp32 (4.8 ms) was the best
    assert [r.candidate for r in drive(resumed, max_tells=3)] == [baseline, fast, cancelled]


def test_any_optuna_storage_url_works(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    drive(OptunaSearcher(space(), storage=url, name="s"), max_tells=1)
    assert OptunaSearcher(space(), storage=url, name="s", resume=True).resumed == 1
    assert OptunaSearcher(space(), storage=url, name="s", resume=False).resumed == 0


def test_tell_needs_an_asked_candidate():
    searcher = OptunaSearcher(space())
    stray = space().defaults()[1]
    with pytest.raises(ValueError, match="was not asked"):
        searcher.tell(TrialResult(stray, TrialStatus.FAILED, "x"))


def test_a_journal_file_holds_several_studies(tmp_path):
    path = tmp_path / "all.journal"
    drive(OptunaSearcher(space(), storage=path, name="a"), max_tells=2)
    drive(OptunaSearcher(space(), storage=path, name="b"), max_tells=3)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    assert sorted(optuna.study.get_all_study_names(storage)) == ["a", "b"]


def test_a_torn_journal_tail_is_dropped_and_the_study_resumes(tmp_path):
    drive(OptunaSearcher(space(), storage=tmp_path, name="s"), max_tells=4)
    (journal,) = tmp_path.glob("*.journal")
    with journal.open("ab") as handle:  # the process was killed in the middle of a record
        handle.write(b'{"op_code": 6, "worker_id": "w", "trial_id": 4, "param_na')
    with pytest.warns(UserWarning, match="torn record"):
        resumed = OptunaSearcher(space(), storage=tmp_path, name="s", resume=True)
    assert resumed.resumed == 4
    # Two re-measures (the baseline, the previous best), then two new configs, whose records
    # follow the cut: every line is whole again.
    drive(resumed, max_tells=4)
    assert OptunaSearcher(space(), storage=tmp_path, name="s", resume=True).resumed == 6


def test_starting_over_never_deletes_a_stored_study(tmp_path):
    drive(OptunaSearcher(space(), storage=tmp_path, name="s"), max_tells=3)
    fresh = OptunaSearcher(space(), storage=tmp_path, name="s", resume=False)
    assert fresh.resumed == 0 and fresh.study.study_name.startswith("s~")
    drive(fresh, max_tells=1)
    first, second = sorted(tmp_path.glob("*.journal"))
    stored = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(first)))
    assert len(optuna.load_study(study_name="s", storage=stored).trials) == 3  # kept whole
    assert second.stem.startswith("s~")
    # Resuming continues the latest study of the family: the fresh one.
    assert OptunaSearcher(space(), storage=tmp_path, name="s", resume=True).resumed == 1


def test_two_runs_starting_over_at_once_get_their_own_studies(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    one = OptunaSearcher(space(), storage=url, name="s", resume=False)
    two = OptunaSearcher(space(), storage=url, name="s", resume=False)
    assert one.study.study_name == "s" and two.study.study_name.startswith("s~")
    drive(one, max_tells=2)
    drive(two, max_tells=3)
    assert len(one.study.trials) == 2 and len(two.study.trials) == 3
