"""Peak memory of a candidate, measured in the process that builds and runs it.

CPU: the resident-set high-water mark. ``start()`` reads the resident set (the baseline: the
source model and libraries already loaded) and, on Linux, resets the kernel's high-water mark
by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0); ``stop()`` reads ``VmHWM`` from
``/proc/self/status``. So the peak covers exactly the watched span, including memory freed
before it ended; the candidate's share is peak minus baseline. Where the mark cannot be reset
(another OS, a locked-down /proc) the peak is ``getrusage``'s ``ru_maxrss``, the whole
process's lifetime peak, and ``method`` says so. One watch at a time per process: a trial
process runs one candidate.

GPU: torch's caching allocator, ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats`` at the start, minus what was allocated then. Memory a backend
allocates outside torch (ONNX Runtime's CUDA provider, TensorRT) is not in it.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import Any

from speedster_dist.serving import MemoryUsage

__all__ = ["MemoryWatch"]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_MIB = 2**20


def _status_mb(path: Path, key: str) -> float | None:
    """A ``kB`` line of /proc/self/status (``VmRSS``, ``VmHWM``) in MiB; None off Linux."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024 / _MIB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_high_water_mark(path: Path) -> bool:
    try:
        path.write_text("5")
    except OSError:
        return False
    return True


def _lifetime_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / _MIB if sys.platform == "darwin" else peak * 1024 / _MIB


def _cuda() -> Any | None:
    """torch.cuda when torch is already imported and CUDA is in use; never imports torch."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda


class MemoryWatch:
    """``start()`` before the build (or the measurement), ``stop()`` after it: the peak.

    ``status`` and ``clear_refs`` replace the /proc files in tests.
    """

    def __init__(self, status: Path = _STATUS, clear_refs: Path = _CLEAR_REFS) -> None:
        self._status = status
        self._clear_refs = clear_refs
        self._baseline = 0.0
        self._reset = False
        self._device_baseline = 0

    def start(self) -> MemoryWatch:
        self._baseline = _status_mb(self._status, "VmRSS") or 0.0
        self._reset = _reset_high_water_mark(self._clear_refs)
        cuda = _cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
            self._device_baseline = int(cuda.memory_allocated())
        return self

    def stop(self) -> MemoryUsage:
        peak = _status_mb(self._status, "VmHWM") if self._reset else None
        method = "VmHWM, reset at the start"
        if peak is None:
            peak, method = _lifetime_peak_mb(), "ru_maxrss: the process's lifetime peak"
        cuda = _cuda()
        device = None
        if cuda is not None:
            device = max(int(cuda.max_memory_allocated()) - self._device_baseline, 0) / _MIB
        return MemoryUsage(
            peak_rss_mb=round(max(peak, self._baseline), 3),
            baseline_rss_mb=round(self._baseline, 3),
            peak_device_mb=None if device is None else round(device, 3),
            method=method,
        )
