"""Which entry of a learner runs on this machine: its own type, a compatible one, the fallback.

``own``: one of this machine's hardware types (its CPU, each of its GPU models) has a winner;
when several do (a GPU node: its CPU's and its GPU's), the fastest measured one runs, so a GPU
node runs its GPU winner. ``compatible``: the closest winner that can run here (same device
kind, every CPU feature it needs present here, its backend available here, and for GPU
engines the same compute capability). ``portable``: the original model in a standard format,
run on the CPU, for machines no winner fits. ``explicit``: asked for by key. ``device``
("cpu" or "gpu") restricts the choice to winners of that device kind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from speedster_dist.artifacts._entries import PORTABLE_KEY, WinnerEntry
from speedster_dist.backends import get_backend
from speedster_dist.errors import ArtifactError
from speedster_dist.records import DeviceKind, HardwareType, SavedCandidate

__all__ = [
    "DATA_ONLY_SUFFIX",
    "Selection",
    "compatible",
    "entry_speed",
    "select_entry",
    "stand_in_message",
]


@dataclass(frozen=True)
class Selection:
    """Which entry a learner runs and why: ``how`` is ``"own"``, ``"compatible"``,
    ``"portable"`` or ``"explicit"``; ``message`` explains a fallback (shown as a warning)."""

    key: str
    how: str
    message: str = ""


def compatible(entry: WinnerEntry, hardware: HardwareType) -> bool:
    """Can ``entry`` run on ``hardware``? Same device kind; every CPU feature it needs; a GPU
    engine (device-specific, e.g. TensorRT) only on the compute capability it was built for."""
    wanted = entry.hardware
    if wanted.device is not hardware.device or not wanted.features <= hardware.features:
        return False
    if wanted.device is DeviceKind.GPU and "engine" in entry.saved.options:
        return wanted.compute_capability == hardware.compute_capability
    try:
        return get_backend(entry.backend).unavailable_reason(hardware.device) is None
    except Exception:  # a backend that cannot even be imported here
        return False


def _closest(entries: Mapping[str, WinnerEntry], local: Sequence[HardwareType]) -> str | None:
    """The compatible entry with the most features in common with this machine, if any."""
    scored = [
        (len(entry.hardware.features & hardware.features), key)
        for key, entry in entries.items()
        for hardware in local
        if compatible(entry, hardware)
    ]
    return max(scored)[1] if scored else None


def _explicit(
    entries: Mapping[str, WinnerEntry], portable: SavedCandidate | None, key: str
) -> Selection:
    if key == PORTABLE_KEY and portable is not None:
        return Selection(PORTABLE_KEY, "explicit")
    if key not in entries:
        has = list(entries) + ([PORTABLE_KEY] if portable else [])
        raise ArtifactError(f"no winner for hardware type {key!r}; this learner has {has}")
    return Selection(key, "explicit")


def _p50(entry: WinnerEntry) -> float:
    value = entry.metrics.get("latency_p50_s")
    return float(value) if isinstance(value, int | float) and value > 0 else math.inf


def select_entry(
    entries: Mapping[str, WinnerEntry],
    portable: SavedCandidate | None,
    local: Sequence[HardwareType],
    hardware_key: str | None = None,
    device: DeviceKind | None = None,
) -> Selection:
    """The entry to run on a machine of hardware types ``local`` (see the module docstring);
    ``hardware_key`` picks one explicitly. Raises :class:`ArtifactError` when none fits."""
    if hardware_key is not None:
        return _explicit(entries, portable, hardware_key)
    if device is not None:
        local = [h for h in local if h.device is device]
        entries = {k: e for k, e in entries.items() if e.hardware.device is device}
    own = [h.key for h in local if h.key in entries]
    if own:
        return Selection(min(own, key=lambda key: _p50(entries[key])), "own")
    here = ", ".join(h.key for h in local) or f"no {device.value if device else ''} device"
    closest = _closest(entries, local)
    if closest is not None:
        message = (
            f"no winner for this machine's hardware types ({here}); using the "
            f"closest compatible winner, measured on {closest}"
        )
        return Selection(closest, "compatible", message)
    if portable is None:
        raise ArtifactError(
            f"this learner has winners for {list(entries)} but none can run on this machine "
            f"({here}) and it has no portable fallback; re-run optimize_model here to add one"
        )
    message = (
        f"no winner of this learner ({', '.join(entries)}) can run on this machine ({here}); "
        f"using the portable fallback: the original model, not optimized "
        f"({portable.backend}, {portable.device})"
    )
    return Selection(PORTABLE_KEY, "portable", message)


# The key under which a type's data-only stand-in is loaded (never a hardware key: those
# hold no spaces).
DATA_ONLY_SUFFIX = " (data-only)"


def entry_speed(entry: WinnerEntry) -> tuple[float | None, str]:
    """(p50 in seconds, "p50 1.23 ms, 2.10x the original"), confirmed figures first."""
    metrics = entry.metrics
    p50 = metrics.get("confirmed_p50_s") or metrics.get("latency_p50_s")
    base = metrics.get("confirmed_baseline_p50_s") or metrics.get("baseline_p50_s")
    if not isinstance(p50, int | float) or p50 <= 0:
        return None, "not measured"
    speedup = f", {base / p50:.2f}x the original" if isinstance(base, int | float) else ""
    return float(p50), f"p50 {p50 * 1e3:.3g} ms{speedup}"


def stand_in_message(key: str, winner: WinnerEntry, alt: WinnerEntry | None) -> str:
    """The one warning of a learner loaded without trust_code whose winner is a program."""
    fast, fast_text = entry_speed(winner)
    if alt is None:
        what, ratio = "the portable fallback (the original model, not optimized)", ""
    else:
        slow, slow_text = entry_speed(alt)
        what = f"its fastest data-only candidate, {alt.label} ({slow_text})"
        ratio = f", {slow / fast:.2f}x faster" if slow and fast else ""
    return (
        f"the winner for {key}, {winner.label} ({fast_text}), is saved as a program, which "
        f"loads only with trust_code=True; running {what} instead. "
        f"load_model(path, trust_code=True) would run the winner{ratio}: pass it only for a "
        "learner from a source you trust"
    )
