"""The summary prints what the trials noted (issue 20, item 11: int8 on few distinct samples)."""

from speedster_dist.present import format_summary
from speedster_dist.records import (
    Candidate,
    DeviceKind,
    HardwareType,
    LatencyStats,
    SearchOutcome,
    TrialResult,
    TrialStatus,
)

KEY, OTHER = "cpu-test-vnni", "cpu-test-avx2"
NOTE = (
    "int8 was calibrated on 5 distinct sample(s) (of 80 held in): 16 or more distinct, "
    "representative samples make int8 more accurate"
)


def _complete(candidate: Candidate, p50: float, baseline: bool = False) -> TrialResult:
    latency = LatencyStats(10, p50, 0.0, p50, p50, p50, p50, 10 * p50)
    return TrialResult(candidate, TrialStatus.COMPLETE, latency=latency, is_baseline=baseline)


def _rejected(key: str, fp_layers: int, drop: float) -> TrialResult:
    candidate = Candidate.make("openvino", "int8", key, "nncf", {"fp_layers": fp_layers})
    reason = f"metric drop {drop} is over the accepted 0.01"
    return TrialResult(candidate, TrialStatus.REJECTED, reason, metric_drop=drop, notes=(NOTE,))


def test_a_rejected_int8_trials_note_is_printed_once_under_its_hardware_type():
    outcome = SearchOutcome(hardware={})
    for key in (KEY, OTHER):
        outcome.hardware[key] = HardwareType(key, DeviceKind.CPU, "test CPU")
        base = _complete(Candidate.make("torch", "fp32", key), 0.030, baseline=True)
        bf16 = _complete(Candidate.make("openvino", "bf16", key), 0.011)
        outcome.results.extend([base, bf16])
        outcome.winners[key] = bf16
    outcome.results.extend([_rejected(KEY, 1, 0.032), _rejected(KEY, 2, 0.031)])

    summary = format_summary(outcome, 1, "cosine", 0.01)

    assert summary.count(f"  note: {NOTE}") == 1  # two trials, one note
    mine, other = summary.split(f"Hardware type {OTHER}")
    assert NOTE in mine and NOTE not in other  # under its own hardware type only
