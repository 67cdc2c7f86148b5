"""History rows of a load objective: the load point, what it measured and the memory
(schema 4); older rows read with those columns null; the history's knowledge leaves load
points out of latency speedups."""

from __future__ import annotations

from dataclasses import replace

import pytest

from speedster_dist.records import Candidate, TrialStatus
from speedster_dist.results import (
    SERVING_COLUMNS,
    HistoryWriter,
    RunInfo,
    knowledge_from_rows,
    read_history,
)
from speedster_dist.serving import Objective
from speedster_dist.testing.curves import LoadCurve

from .conftest import DAY0, trial

CPU = "cpu-test-2c"
OBJECTIVE = Objective("throughput", (8,), (2,), latency_budget_ms=50.0)


def load_trial(label_load=(8, 2), objective=OBJECTIVE):
    candidate = Candidate.make("onnxruntime", "fp32", CPU, "", {"inter_op_threads": 1}, label_load)
    result = LoadCurve().result(candidate, objective)
    return replace(result, finished_at=DAY0.timestamp(), node_id="node-1")


def writer(root, batch=1):
    settings = {"metric_drop_ths": None, **OBJECTIVE.identity()}
    return HistoryWriter(root, RunInfo("run-1", "optimize", "bert", "fp", "", batch, settings))


def test_a_load_point_row_holds_its_point_figures_and_memory(tmp_path):
    result = load_trial()
    writer(tmp_path, batch=2).append(result)
    row = read_history(tmp_path).to_pylist()[0]
    stats = result.throughput
    assert row["objective"] == "throughput"
    assert (row["load_batch_size"], row["concurrency"]) == (8, 2)
    assert row["latency_tail_s"] == pytest.approx(stats.tail_s)
    assert row["latency_percentile"] == 99.0 and row["overlaps"] is True
    assert row["throughput"] == pytest.approx(stats.throughput * 2)  # 2 inferences a request
    assert row["rss_delta_mb"] == pytest.approx(result.memory.rss_delta_mb)
    assert row["peak_device_mb"] is None
    assert row["status"] == "complete"


def test_an_infeasible_point_is_a_row_of_its_own_status(tmp_path):
    over = load_trial((8, 2), replace(OBJECTIVE, latency_budget_ms=1.0))
    assert over.status is TrialStatus.INFEASIBLE
    writer(tmp_path).append(over)
    row = read_history(tmp_path).to_pylist()[0]
    assert row["status"] == "infeasible" and "latency budget" in row["reason"]
    assert row["latency_p50_s"] is not None


def test_a_latency_row_leaves_the_load_columns_null(tmp_path):
    writer(tmp_path).append(trial("torch", "fp32", CPU, 0.01, baseline=True))
    row = read_history(tmp_path).to_pylist()[0]
    load = {name for name, _ in SERVING_COLUMNS} - {"objective"}
    assert all(row[name] is None for name in load)


def test_the_knowledge_of_latency_speedups_ignores_load_points():
    base = {"run_id": "r", "hardware_type": CPU, "status": "complete", "run_kind": "optimize"}
    rows = [
        {
            **base,
            "backend": "torch",
            "precision": "fp32",
            "is_baseline": True,
            "latency_p50_s": 0.01,
        },
        {**base, "backend": "onnxruntime", "precision": "fp32", "latency_p50_s": 0.005},
        {
            **base,
            "backend": "openvino",
            "precision": "fp32",
            "latency_p50_s": 0.0001,
            "load_batch_size": 32,
        },
    ]
    speedups, _ = knowledge_from_rows(rows)
    assert speedups[CPU] == {"onnxruntime/fp32": pytest.approx(2.0)}
