"""Peak memory: the resident-set high-water mark over the watched span, minus the baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speedster_dist.measure import MemoryWatch

_MB = 2**20


def _status(rss_kb: int, hwm_kb: int) -> str:
    return f"Name:\tpython\nVmHWM:\t{hwm_kb} kB\nVmRSS:\t{rss_kb} kB\nThreads:\t1\n"


def test_reads_the_reset_high_water_mark_against_the_baseline(tmp_path: Path):
    status, clear = tmp_path / "status", tmp_path / "clear_refs"
    status.write_text(_status(rss_kb=102_400, hwm_kb=300_000))
    watch = MemoryWatch(status, clear).start()
    assert clear.read_text() == "5"  # the kernel's "reset the peak resident set" request
    status.write_text(_status(rss_kb=110_000, hwm_kb=153_600))
    usage = watch.stop()
    assert usage.baseline_rss_mb == 100.0 and usage.peak_rss_mb == 150.0
    assert usage.rss_delta_mb == 50.0
    assert usage.method == "VmHWM, reset at the start" and usage.peak_device_mb is None


def test_without_a_reset_the_lifetime_peak_is_used_and_said(tmp_path: Path):
    status = tmp_path / "status"
    status.write_text(_status(rss_kb=1024, hwm_kb=2048))
    usage = MemoryWatch(status, tmp_path / "absent" / "clear_refs").start().stop()
    assert usage.method.startswith("ru_maxrss") and usage.peak_rss_mb > 0


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc only")
def test_memory_allocated_during_the_span_is_in_its_peak():
    watch = MemoryWatch().start()
    block = np.ones(64 * _MB, dtype=np.uint8)  # 64 MiB, touched
    del block
    usage = watch.stop()
    assert usage.method == "VmHWM, reset at the start"
    assert usage.rss_delta_mb >= 60  # freed before the end, still counted at its peak
