"""Nightly rebench of a winner chosen for an operating point: it is re-measured at that point
(its baseline beside it, at the same point), through the same fixed-trial runtime as every
rebench, and its throughput and per-request p99 are judged night over night; a p99 over the
run's latency budget is a regression whatever the history.

Measurements come from the priced fleet's LoadCurve (arithmetic); a slower night is the same
curve with the hardware type slowed down."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from speedster_dist.results import HistoryWriter, RunInfo, compare_run, read_history
from speedster_dist.runtime import (
    FixedTrial,
    baseline_candidate,
    operating_load,
    run_fixed_trials,
    winner_candidate,
)
from speedster_dist.search import SpaceSettings
from speedster_dist.testing.curves import CurveExecutor

from ..priced_fleet import CURVE, FAST, OBJECTIVE, PROBE, SMALL, SMALL_RATE
from .conftest import DAY0

# The manifest entry of the small type's throughput winner (as learner_builder saves it).
ENTRY = {
    "backend": "fast",
    "precision": "fp32",
    "knobs": {"slowdown": 1},
    "serving": {"objective": "throughput", "batch_size": 8, "concurrency": 2},
}
SETTINGS = {"metric_drop_ths": 0.05, **OBJECTIVE.identity()}


def _night(root, night, speed=1.0, objective=OBJECTIVE):
    """One rebench run of the entry and its baseline on the small type, ``speed`` x as fast."""
    from speedster_dist.testing.backend_contract import contract_payload

    curve = replace(CURVE, hardware_speed={SMALL.key: speed})
    executor = CurveExecutor(curve, PROBE)
    group = next(g for g in executor.discover() if g.hardware.key == SMALL.key)
    space = SpaceSettings(tune_knobs=True, baseline_backend="slow", objective=OBJECTIVE)
    base = baseline_candidate(group, space, operating_load(ENTRY))
    assert base is not None
    trials = [
        FixedTrial(base, group.hardware, "baseline"),
        FixedTrial(winner_candidate(ENTRY, SMALL.key), group.hardware, "winner"),
    ]
    payload = replace(contract_payload("mlp", 0.01, FAST), objective=objective)
    info = RunInfo(f"night-{night}", "rebench", "bert-base", "f1", "bert", 1, SETTINGS)
    writer = HistoryWriter(root, info)
    when = (DAY0 + timedelta(days=night)).timestamp()
    for trial, result in run_fixed_trials(executor, payload, trials):
        writer.append(replace(result, finished_at=when), trial.role)


def _verdicts(root, night):
    rows = read_history(root).to_pylist()
    return {(c.role, c.figure): c for c in compare_run(rows, f"night-{night}")}


def test_the_winner_and_its_baseline_are_re_measured_at_the_operating_point(tmp_path):
    _night(tmp_path, 1)
    rows = {r["role"]: r for r in read_history(tmp_path).to_pylist()}
    for role in ("winner", "baseline"):
        assert (rows[role]["load_batch_size"], rows[role]["concurrency"]) == (8, 2)
        assert rows[role]["objective"] == "throughput"
    assert rows["winner"]["throughput"] == pytest.approx(SMALL_RATE)  # 16 / 9 ms
    assert rows["baseline"]["backend"] == "slow"  # 2x slower backend: half the rate
    assert rows["baseline"]["throughput"] == pytest.approx(SMALL_RATE / 2)


def test_a_throughput_drop_and_a_p99_rise_at_the_operating_point_are_flagged(tmp_path):
    for night in (1, 2, 3):
        _night(tmp_path, night)
    _night(tmp_path, 4, speed=0.5)  # 2x slower: 889/s, p99 7/889 s + 18 ms = 25.9 ms
    found = _verdicts(tmp_path, 4)
    throughput = found[("winner", "throughput")]
    assert throughput.regressed and throughput.median == pytest.approx(SMALL_RATE)
    assert throughput.change == pytest.approx(-0.5)
    p99 = found[("winner", "latency_p99_s")]
    assert p99.regressed and p99.median == pytest.approx(7 / SMALL_RATE + 0.009)
    assert p99.value == pytest.approx(7 / (SMALL_RATE / 2) + 0.018)  # +100% > the 50% bar
    assert "budget" not in p99.note  # 25.9 ms is within 40 ms
    steady = _verdicts(tmp_path, 3)
    assert not steady[("winner", "throughput")].regressed
    assert not steady[("winner", "latency_p99_s")].regressed


def test_an_operating_point_over_its_budget_is_a_regression_even_without_history(tmp_path):
    _night(tmp_path, 1, speed=0.25)  # a 36 ms call: p99 7/444 s + 36 ms = 51.8 ms > 40 ms
    status = _verdicts(tmp_path, 1)[("winner", "status")]
    assert status.regressed and status.judged and status.history == 0
    assert "infeasible" in status.note and "over the latency budget of 40 ms" in status.note


def test_a_complete_point_whose_p99_is_over_the_runs_budget_is_flagged(tmp_path):
    # Measured without the constraint (complete), judged against the budget the run recorded.
    unbounded = replace(OBJECTIVE, latency_budget_ms=None)
    _night(tmp_path, 1, speed=0.25, objective=unbounded)
    p99 = _verdicts(tmp_path, 1)[("winner", "latency_p99_s")]
    assert p99.regressed and p99.judged
    assert p99.note == "p99 51.8 ms is over the budget of 40 ms"


def test_only_a_load_objectives_entry_has_an_operating_point_to_re_measure():
    assert operating_load(ENTRY) == (8, 2)
    latency = {**ENTRY, "serving": {"objective": "latency", "batch_size": 1, "concurrency": 1}}
    assert operating_load(latency) is None and winner_candidate(latency, "k").load_point is None
    old = {k: v for k, v in ENTRY.items() if k != "serving"}  # a version 1 manifest
    assert operating_load(old) is None
    assert winner_candidate(ENTRY, "k").label == "fast fp32 slowdown=1 @ 8x2"


def test_the_report_flags_the_throughput_and_p99_regressions(tmp_path):
    from speedster_dist.results import render_report

    for night in (1, 2, 3):
        _night(tmp_path, night)
    _night(tmp_path, 4, speed=0.5)
    page = render_report(read_history(tmp_path).to_pylist())
    section = page.split("<h2>Regressions (nightly re-benchmarks)</h2>")[1].split("<h2>")[0]
    rows = [r for r in section.split("<tr>") if "REGRESSION" in r and "night-4" in r]
    figures = {f for r in rows for f in ("throughput", "latency_p99_s") if f">{f}<" in r}
    assert figures == {"throughput", "latency_p99_s"}
    assert "888.9/s" in section  # the night's rate, in inferences a second
