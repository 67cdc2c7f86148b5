"""The machine load a measurement saw: load average, steal and other processes' CPU share."""

from __future__ import annotations

import pytest

from speedster_dist.measure import LOAD_KEYS, LoadWatch, MeasureSettings, overloaded
from speedster_dist.records import Candidate
from speedster_dist.runtime import run_trial
from speedster_dist.testing.backend_contract import contract_payload


def _stat(user, system, idle, steal, nice=0, iowait=0, irq=0, softirq=0):
    fields = [user, nice, system, idle, iowait, irq, softirq, steal, 0, 0]
    return "cpu  " + " ".join(str(v) for v in fields) + "\ncpu0 1 2 3 4\n"


def test_steal_and_other_processes_share_over_the_window(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(_stat(user=10_000, system=2_000, idle=50_000, steal=1_000))
    watch = LoadWatch(stat).start()
    # Over the window: 10 000 ticks in all, 1 000 stolen, 6 000 busy (user + system).
    stat.write_text(_stat(user=15_000, system=3_000, idle=53_000, steal=2_000))
    load = watch.stop()
    assert load["steal_share"] == pytest.approx(0.1)
    # This process used almost nothing of those busy ticks: they were other processes'.
    assert load["others_cpu_share"] == pytest.approx(0.6, abs=0.01)
    assert set(load) == set(LOAD_KEYS)
    assert load["loadavg_before"] >= 0 and load["loadavg_after"] >= 0


def test_without_proc_stat_only_the_load_average(tmp_path):
    load = LoadWatch(tmp_path / "absent").start().stop()
    assert set(load) == {"loadavg_before", "loadavg_after"}


def test_an_unchanged_counter_measures_no_share(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(_stat(user=1, system=1, idle=1, steal=0))
    assert "steal_share" not in LoadWatch(stat).start().stop()


def test_every_timed_trial_records_the_load_it_saw(fakes):
    quick = MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=3, min_duration_s=0)
    payload = contract_payload("mlp", None, quick)
    result, _ = run_trial(payload, Candidate.make("fake", "fp32", "cpu-x", knobs={"slowdown": 1}))
    extra = dict(result.extra)
    assert result.ok and {"loadavg_before", "loadavg_after"} <= set(extra)
    assert all(0 <= extra[k] <= 1 for k in ("steal_share", "others_cpu_share") if k in extra)


def test_a_load_that_does_not_fit_in_the_free_cores_is_overloaded():
    # 8 cores, the measurement used 2: others may take 6 (and a tick's slack), not more.
    assert overloaded({"others_cpu_share": 0.75, "steal_share": 0.0}, 2, 8) == ""
    why = overloaded({"others_cpu_share": 0.75, "steal_share": 0.125}, 2, 8)
    assert why == "other work kept 7.0 of 8 cores busy while the measurement used 2"
    # Using every core, any real share of other work is too much.
    assert overloaded({"others_cpu_share": 0.05}, 8, 8) == ""
    assert overloaded({"others_cpu_share": 0.3}, 8, 8) != ""
    # Without /proc/stat: the load average against the machine's cores.
    assert overloaded({"loadavg_after": 8.5}, 8, 8) == ""
    assert "load average 12.0 above the machine's 8 cores" in overloaded(
        {"loadavg_after": 12.0}, 8, 8
    )
    assert overloaded({}, 8, 8) == ""  # nothing measured: nothing to say
