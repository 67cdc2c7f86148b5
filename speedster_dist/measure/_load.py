"""The machine load a measurement saw, recorded with it so that a noisy figure is visible.

Around a timed window: the 1-minute load average before and after (``os.getloadavg``, where
the OS has one) and, on Linux, from ``/proc/stat``: the share of the machine's CPU time that
the hypervisor stole, and the share that other processes used (every busy CPU second minus
this process's own). Shares are fractions of all the machine's CPUs over the window.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOAD_KEYS", "LoadWatch", "overloaded"]

# The keys :meth:`LoadWatch.stop` returns (the history's columns of the same names).
LOAD_KEYS = ("loadavg_before", "loadavg_after", "steal_share", "others_cpu_share")
_PROC_STAT = Path("/proc/stat")
# Share of the machine other work may take beside a measurement before its figure is noisy:
# /proc/stat counts in ticks (1/100 s), so a short window reads a few percent high or low.
OVERLOAD_SLACK = 0.1


@dataclass(frozen=True)
class _CpuTimes:
    total_s: float
    busy_s: float
    steal_s: float


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # not on this OS
        return None


def _cpu_times(path: Path = _PROC_STAT) -> _CpuTimes | None:
    """The machine's CPU seconds from the first line of /proc/stat (None off Linux)."""
    try:
        first = path.read_text().splitlines()[0].split()
        ticks = [int(v) for v in first[1:9]] + [0] * (9 - len(first))
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = ticks[:8]
    # guest time is already counted in user: the first eight fields are the whole.
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return _CpuTimes(total / hz, (user + nice + system + irq + softirq) / hz, steal / hz)


class LoadWatch:
    """``start()`` before a timed window, ``stop()`` after it: the load it saw.

    ``proc_stat`` replaces /proc/stat in tests.
    """

    def __init__(self, proc_stat: Path = _PROC_STAT) -> None:
        self._path = proc_stat
        self._before: float | None = None
        self._cpu: _CpuTimes | None = None
        self._own = 0.0

    def start(self) -> LoadWatch:
        self._before = _loadavg()
        self._own = time.process_time()  # every thread of this process, user + system
        self._cpu = _cpu_times(self._path)
        return self

    def stop(self) -> dict[str, float]:
        """The keys of :data:`LOAD_KEYS` that this OS could measure."""
        cpu, own = _cpu_times(self._path), time.process_time() - self._own
        found = {"loadavg_before": self._before, "loadavg_after": _loadavg()}
        if cpu is not None and self._cpu is not None and cpu.total_s > self._cpu.total_s:
            total = cpu.total_s - self._cpu.total_s
            steal = (cpu.steal_s - self._cpu.steal_s) / total
            others = (cpu.busy_s - self._cpu.busy_s - own) / total
            found["steal_share"] = min(max(steal, 0.0), 1.0)
            # Tick counting is coarse: a small negative remainder is rounding, not load.
            found["others_cpu_share"] = min(max(others, 0.0), 1.0)
        return {k: round(v, 4) for k, v in found.items() if v is not None}


def overloaded(
    load: Mapping[str, float], cores_used: float, machine_cores: int | None = None
) -> str:
    """Why a measurement that kept ``cores_used`` cores busy saw more load than the machine
    had cores for ("" when it did not): what other processes ran, plus what the hypervisor
    stole (in cores, from :class:`LoadWatch`'s shares) did not fit in the cores the
    measurement left free. Off Linux, the 1-minute load average after the window is compared
    with the machine's cores instead (it counts the measurement's own threads too).

    Called on each round of a confirmation and by the benchmarks: a figure so measured is
    repeated or marked, never quoted.
    """
    cores = machine_cores or os.cpu_count() or 1
    used = min(max(cores_used, 1.0), float(cores))
    slack = OVERLOAD_SLACK * cores
    if "others_cpu_share" in load:
        others = load["others_cpu_share"] * cores + load.get("steal_share", 0.0) * cores
        if others > cores - used + slack:
            return (
                f"other work kept {others:.1f} of {cores} cores busy while the measurement "
                f"used {used:g}"
            )
        return ""
    after = load.get("loadavg_after")
    if after is not None and after > cores + slack:
        return f"load average {after:.1f} above the machine's {cores} cores"
    return ""
