"""What the history teaches a search: median speedups per backend x precision, and winners."""

from __future__ import annotations

import pytest

from speedster_dist.results import history_knowledge, knowledge_from_rows

from .conftest import confirm, run, trial

HW = "cpu-intel-xeon-avx512vnni-2c"
OTHER = "cpu-amd-epyc-avx2-2c"


def _search(root, run_id, hw, base_p50, others, kind="optimize"):
    writer = run(root, run_id, kind)
    writer.append(trial("torch", "fp32", hw, base_p50, baseline=True))
    for backend, precision, p50 in others:
        writer.append(trial(backend, precision, hw, p50))


def test_median_speedups_and_winners_per_hardware_type(tmp_path):
    _search(tmp_path, "r1", HW, 0.030, [("openvino", "fp32", 0.015), ("torchscript", "fp32", 0.03)])
    _search(tmp_path, "r2", HW, 0.040, [("openvino", "fp32", 0.010), ("onnxruntime", "fp32", 0.02)])
    _search(tmp_path, "r3", HW, 0.020, [("openvino", "fp32", 0.010), ("openvino", "fp32", 0.005)])
    _search(tmp_path, "r4", OTHER, 0.050, [("torchscript", "fp32", 0.010)])
    speedups, winners = history_knowledge(tmp_path)
    # openvino: 2x, 4x and 4x (the run's best of its two configs): median 4x.
    assert speedups[HW]["openvino/fp32"] == pytest.approx(4.0)
    assert speedups[HW]["torchscript/fp32"] == pytest.approx(1.0)
    assert speedups[HW]["onnxruntime/fp32"] == pytest.approx(2.0)
    assert speedups[OTHER] == {"torchscript/fp32": pytest.approx(5.0)}
    assert [w["backend"] for w in winners[HW]] == ["openvino"]  # won all three runs
    assert winners[OTHER][0] == {
        "backend": "torchscript",
        "precision": "fp32",
        "technique": "",
        "knobs": {},
    }


def test_failed_trials_runs_without_baseline_and_rebench_winners():
    rows = [
        # No complete baseline in r1: nothing can be read from it.
        {"run_id": "r1", "hardware_type": HW, "backend": "torch", "precision": "fp32",
         "is_baseline": True, "status": "failed", "latency_p50_s": None},
        {"run_id": "r1", "hardware_type": HW, "backend": "openvino", "precision": "fp32",
         "is_baseline": False, "status": "complete", "latency_p50_s": 0.001,
         "run_kind": "optimize"},
        # A rebench measures speedups, but its winner was chosen elsewhere: not a winner.
        {"run_id": "n1", "hardware_type": HW, "backend": "torch", "precision": "fp32",
         "is_baseline": True, "status": "complete", "latency_p50_s": 0.03, "run_kind": "rebench"},
        {"run_id": "n1", "hardware_type": HW, "backend": "onnxruntime", "precision": "int8",
         "technique": "dynamic", "knobs": "{\"threads\": 2}", "is_baseline": False,
         "status": "complete", "latency_p50_s": 0.01, "run_kind": "rebench"},
        {"run_id": "n1", "hardware_type": HW, "backend": "openvino", "precision": "int8",
         "is_baseline": False, "status": "rejected", "latency_p50_s": None,
         "run_kind": "rebench"},
    ]  # fmt: skip
    speedups, winners = knowledge_from_rows(rows)
    assert speedups == {HW: {"onnxruntime/int8": pytest.approx(3.0)}}
    assert winners == {}


def test_no_history_teaches_nothing(tmp_path):
    assert history_knowledge(tmp_path / "absent") == ({}, {})


def test_a_confirmed_search_is_won_by_its_confirmed_fastest_counted_once(tmp_path):
    writer = run(tmp_path, "r1")
    base = trial("torch", "fp32", HW, 0.030, baseline=True)
    ort = trial("onnxruntime", "fp32", HW, 0.010)  # the search's fastest...
    ov = trial("openvino", "fp32", HW, 0.012)  # ...loses its place once re-timed
    for t in (base, ort, ov):
        writer.append(t)
    confirm(writer, [(base, [0.03] * 3), (ort, [0.015] * 3), (ov, [0.011] * 3)])
    # r2: nothing beat the baseline once re-timed: no winner from that run
    writer = run(tmp_path, "r2")
    base, ts = (
        trial("torch", "fp32", HW, 0.030, baseline=True),
        trial("torchscript", "fp32", HW, 0.02),
    )
    writer.append(base)
    writer.append(ts)
    confirm(writer, [(base, [0.02] * 3), (ts, [0.025] * 3)])
    speedups, winners = history_knowledge(tmp_path)
    # the arms' speedups are the trials' (one per run), not the re-timings'
    assert speedups[HW] == {
        "onnxruntime/fp32": pytest.approx(3.0),
        "openvino/fp32": pytest.approx(2.5),
        "torchscript/fp32": pytest.approx(1.5),
    }
    assert [w["backend"] for w in winners[HW]] == ["openvino"]
