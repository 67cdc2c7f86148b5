from datetime import datetime, timedelta, timezone

import pytest

from speedster_dist.records import (
    Candidate,
    Confirmation,
    ConfirmedLatency,
    LatencyStats,
    TrialResult,
    TrialStatus,
)
from speedster_dist.results import HistoryWriter, RunInfo

DAY0 = datetime(2024, 3, 1, 2, 0, tzinfo=timezone.utc)


def latency(p50, count=64):
    return LatencyStats(
        count, p50 * 1.02, p50 * 0.05, p50, p50 * 1.1, p50 * 1.3, p50 * 0.9, p50 * count
    )


def trial(
    backend,
    precision,
    hw,
    p50=None,
    status=None,
    drop=0.0,
    baseline=False,
    when=DAY0,
    reason="",
    technique="",
    knobs=None,
):
    """A TrialResult that finished at ``when`` (the history row's time)."""
    status = status or (TrialStatus.COMPLETE if p50 is not None else TrialStatus.FAILED)
    if status is not TrialStatus.COMPLETE and not reason:
        reason = f"{status.value}: planted"
    return TrialResult(
        Candidate.make(backend, precision, hw, technique, knobs or {}),
        status,
        reason,
        latency(p50) if p50 is not None else None,
        drop if status in (TrialStatus.COMPLETE, TrialStatus.REJECTED) else None,
        build_s=1.5,
        model_size_mb=12.0,
        node_id="node-" + hw[:3],
        is_baseline=baseline,
        finished_at=when.timestamp(),
    )


def run(root, run_id, kind="optimize", learner="bert", model="bert-base", batch=1, quick=False):
    settings = {"metric_drop_ths": 0.05}
    info = RunInfo(run_id, kind, model, "f1ngerprint", learner, batch, settings, quick=quick)
    return HistoryWriter(root, info)


def nightly(root, night, hw, winner_p50, baseline_p50, learner="bert", status=None, quick=False):
    """One rebench run: the winner and the baseline of ``learner`` on ``hw``."""
    when = DAY0 + timedelta(days=night)
    writer = run(root, f"night-{night}", "rebench", learner, quick=quick)
    writer.append(trial("torch", "fp32", hw, baseline_p50, baseline=True, when=when), "baseline")
    writer.append(
        trial("onnxruntime", "int8", hw, winner_p50, status=status, when=when, technique="dynamic"),
        "winner",
    )
    return writer


def confirm(writer, timed, when=DAY0 + timedelta(minutes=5)):
    """The search of ``writer``'s run re-timed side by side: ``timed`` pairs each trial (appended
    before) with its round p50s. Returns the rows' files."""
    entries = tuple(ConfirmedLatency(t.candidate, t.is_baseline, tuple(r)) for t, r in timed)
    hw = timed[0][0].candidate.hardware_key
    confirmation = Confirmation(
        hw, entries, len(timed[0][1]), "node-confirm", load=(("steal_share", 0.01),)
    )
    return writer.append_confirmation(confirmation, [t for t, _ in timed], when)


@pytest.fixture
def history(tmp_path):
    return tmp_path / "history"
