"""The machine load a measurement saw: load average, steal and other processes' CPU share."""

from __future__ import annotations

import pytest

from speedster_dist.measure import LOAD_KEYS, LoadWatch, MeasureSettings
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
