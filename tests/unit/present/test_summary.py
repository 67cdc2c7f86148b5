"""The summary names the metric that judged the candidates and the winner's technique."""

from speedster_dist.present import format_summary, metric_line
from speedster_dist.records import (
    Candidate,
    DeviceKind,
    HardwareType,
    LatencyStats,
    SearchOutcome,
    TrialResult,
    TrialStatus,
)

KEY = "cpu-test-vnni"


def _result(candidate, p50, baseline=False, drop=0.0):
    latency = LatencyStats(10, p50, 0.0, p50, p50, p50, p50, 10 * p50)
    return TrialResult(
        candidate, TrialStatus.COMPLETE, latency=latency, metric_drop=drop, is_baseline=baseline
    )


def test_summary_names_the_metric_and_the_int8_technique_with_its_knobs():
    base = _result(Candidate.make("torch", "fp32", KEY), 0.030, baseline=True)
    knobs = {"fp_layers": 1, "smooth_quant_alpha": 0.75}
    winner = _result(Candidate.make("openvino", "int8", KEY, "nncf", knobs), 0.008, drop=0.0045)
    outcome = SearchOutcome(
        hardware={KEY: HardwareType(KEY, DeviceKind.CPU, "test CPU")},
        results=[base, winner],
        winners={KEY: winner},
    )
    summary = format_summary(outcome, 1, "cosine", 0.01)
    first = summary.splitlines()[0]
    assert first == "Candidates judged by metric 'cosine' (drop <= 0.01) on held-out samples"
    assert "int8/nncf fp_layers=1 smooth_quant_alpha=0.75" in summary
    assert "3.75x" in summary  # 30 ms / 8 ms
    assert "0.0045" in summary
    # Without a metric name the summary starts with the hardware type, as before.
    assert format_summary(outcome).startswith(f"Hardware type {KEY}")


def test_metric_line_without_a_threshold():
    line = metric_line("numeric_precision", None)
    assert line == (
        "Candidates judged by metric 'numeric_precision' (no reduced precision) on held-out samples"
    )
