"""Cost per 1M inferences: the arithmetic, price tables, fastest/cheapest, the frontier, and
where they show (summary, LearnerMetadata.describe, the report's cost section)."""

from __future__ import annotations

from pathlib import Path

import pytest

from speedster_dist import LearnerMetadata
from speedster_dist.artifacts import WinnerEntry
from speedster_dist.cost import (
    CostRow,
    PriceError,
    Served,
    basis_note,
    cost_per_million,
    cost_rows,
    derived_throughput,
    fastest_and_cheapest,
    frontier,
    load_prices,
    parse_prices,
)
from speedster_dist.errors import InputError
from speedster_dist.learner import HardwareKeyedLearner
from speedster_dist.options import parse_run_options
from speedster_dist.present import format_summary
from speedster_dist.records import DeviceKind, HardwareType, SearchOutcome

from .test_fleet_learner import _result

EXAMPLE = Path(__file__).resolve().parents[2] / "cluster" / "prices.example.yaml"


def test_cost_per_million_is_price_over_throughput():
    # 100/s is 360,000/h; 3.6 an hour -> 10 per 1M.
    assert cost_per_million(100.0, 3.6) == pytest.approx(10.0)
    assert cost_per_million(400.0, 3.6) == pytest.approx(2.5)
    # Derived from a p50 (no load measured): 10 ms a call of 1 sample, or of 4.
    assert derived_throughput(0.010) == pytest.approx(100.0)
    assert derived_throughput(0.010, 4) == pytest.approx(400.0)


def test_a_measured_throughput_prices_the_operating_point_not_the_p50():
    prices = parse_prices({"a": 3.6, "b": 3.6})
    # a: p50 10 ms per request, but 8 requests a call, 2 calls in flight: 1600/s measured.
    measured = Served("a", "ov fp32 @ 8x2", 1600.0, True, 0.010, point="8x2", tail_s=0.02)
    derived = Served.from_p50("b", "torch fp32", 0.010, None)  # 100/s, from the p50
    a, b = cost_rows([measured, derived], prices)
    assert a.cost_per_1m == pytest.approx(0.625) and a.basis == "measured at 8x2"
    assert b.cost_per_1m == pytest.approx(10.0) and b.basis == "derived from p50"
    assert "derived from p50" in basis_note([b]) and "measured at each" in basis_note([a])
    assert "not alike" in basis_note([a, b])  # a mix is said, never silent


def test_a_node_groups_price_wins_over_its_hardware_types_and_unpriced_types_stay_unpriced():
    prices = parse_prices({"prices": {"gpu-l4": 1.8, "cpu-x": 0.36}, "currency": "EUR"})
    rows = cost_rows(
        [
            Served.from_p50("gpu-nvidia-l4", "trt fp16", 0.001, "gpu-l4"),
            Served.from_p50("cpu-x", "ov int8", 0.002, None),
            Served.from_p50("cpu-y", "torch fp32", 0.004, "unknown-group"),
            Served.from_p50("cpu-z", "failed", None, None),  # no latency: not a row
        ],
        prices,
    )
    assert [(r.hardware_type, r.price_per_hour) for r in rows] == [
        ("gpu-nvidia-l4", 1.8),
        ("cpu-x", 0.36),
        ("cpu-y", None),
    ]
    assert rows[0].cost_per_1m == pytest.approx(0.5) and rows[1].cost_per_1m == pytest.approx(0.2)
    assert rows[2].cost_per_1m is None and rows[0].throughput_per_s == pytest.approx(1000)
    fastest, cheapest = fastest_and_cheapest(rows)
    assert fastest is rows[0] and cheapest is rows[1]
    assert prices.currency == "EUR"


def test_the_frontier_keeps_types_no_other_beats_on_both_latency_and_cost():
    def row(key, p50, cost):
        return CostRow(key, key, p50, 1 / p50, 1.0, cost)

    a, b, c, d = (
        row("a", 0.001, 10.0),
        row("b", 0.002, 5.0),
        row("c", 0.003, 8.0),
        row("d", 0.004, 1.0),
    )
    assert frontier([c, d, a, b]) == [a, b, d]  # c is slower and dearer than b
    assert frontier([row("u", 0.001, None)]) == []


@pytest.mark.parametrize(
    "raw, message",
    [
        ([1, 2], "must be a mapping"),
        ({"prices": {}}, "'prices' must map"),
        ({"prices": {"a": 0}}, "must be a number > 0"),
        ({"prices": {"a": float("nan")}}, "must be a number > 0"),
        ({"prices": {"a": "1.0"}}, "must be a number > 0"),
        ({"prices": {"a": True}}, "must be a number > 0"),
        ({"prices": {"a": float("inf")}}, "the price of 'a' must be a number > 0, got inf"),
        ({"prices": [1.0]}, "'prices' must map"),
        ({"prices": {8: 1.0}}, "the name 8 must be text"),
        (
            {"prices": {"a": 1.0}, "curency": "EUR"},
            "unknown key 'curency': did you mean 'currency'",
        ),
        ({"prices": {"a": 1.0}, "currency": 5}, "currency=5 is invalid: give it as text"),
    ],
)
def test_malformed_price_tables_are_refused(raw, message):
    with pytest.raises(PriceError, match=message):
        parse_prices(raw)


def test_the_shipped_example_prices_every_group_of_the_shipped_configs():
    prices = load_prices(EXAMPLE)
    groups = {"cpu-sapphire-rapids", "cpu-genoa", "gpu-l4", "gpu-a10g", "gpu-h100"}
    assert set(prices.per_hour) == groups and prices.currency == "USD"
    assert "us-east-1" in prices.source
    assert parse_run_options(extras={"prices": str(EXAMPLE)}).prices == prices
    with pytest.raises(InputError, match="prices"):
        parse_run_options(extras={"prices": {"prices": {"a": -1}}})


def test_the_summary_shows_cost_the_fastest_and_the_cheapest_type():
    a, b = "cpu-sim-a", "cpu-sim-b"
    fast, slow = _result(a, "fp16", 0.002), _result(b, "fp32", 0.004)
    outcome = SearchOutcome(
        hardware={k: HardwareType(k, DeviceKind.CPU, k) for k in (a, b)},
        results=[fast, slow],
        winners={a: fast, b: slow},
        node_groups={b: "cheap-group"},
    )
    prices = parse_prices({"prices": {a: 3.6, "cheap-group": 0.36}})
    summary = format_summary(outcome, 1, prices=prices)
    # a: 500/s at 3.6/h -> 2.0 per 1M; b (priced by its node group): 250/s at 0.36/h -> 0.4.
    assert "throughput derived from p50" in summary  # a latency run measured no load
    assert f"  {a}: 2 (fake fp16 slowdown=1, 2 ms, 500/s derived from p50, 3.6/h)" in summary
    assert f"  {b}: 0.4 (fake fp32 slowdown=1, 4 ms, 250/s derived from p50, 0.36/h)" in summary
    assert f"Fastest hardware type: {a}" in summary
    assert f"Cheapest hardware type: {b} (0.4 USD per 1M inferences)" in summary
    assert "Cost per 1M" not in format_summary(outcome, 1)  # no prices, no cost


def test_describe_marks_the_fastest_and_the_cheapest_entry(tmp_path):
    from .test_fleet_learner import ELSEWHERE, _learner, contract_model

    mlp = contract_model("mlp")
    learner = _learner(mlp, tmp_path)
    second = ELSEWHERE.__class__(**{**ELSEWHERE.__dict__, "key": "cpu-second"})
    entry = learner.entries[ELSEWHERE.key]
    metrics = {"latency_p50_s": 0.004, "baseline_p50_s": 0.004, "node_group": "cheap"}
    slow = WinnerEntry(second, entry.backend, entry.precision, "", {}, metrics, entry.saved)
    both = HardwareKeyedLearner(learner.io, {**learner.entries, "cpu-second": slow})
    path = both.save(tmp_path / "artifact")
    meta = LearnerMetadata.read(path)
    prices = parse_prices({"prices": {ELSEWHERE.key: 7.2, "cheap": 0.72}})
    rows = {r["hardware_type"]: r for r in meta.describe(prices)}
    # 1 ms at 7.2/h -> 2.0 per 1M; 4 ms at 0.72/h (its node group's price) -> 0.8.
    assert rows[ELSEWHERE.key]["cost_per_1m"] == pytest.approx(2.0)
    assert rows["cpu-second"]["cost_per_1m"] == pytest.approx(0.8)
    assert rows[ELSEWHERE.key]["fastest"] and not rows[ELSEWHERE.key]["cheapest"]
    assert rows["cpu-second"]["cheapest"] and not rows["cpu-second"]["fastest"]
    assert "cost_per_1m" not in meta.describe()[0]  # without prices: as before


def test_reading_the_cost_module_imports_no_pydantic():
    """cost.py is on the load path (a learner's manifest describes costs): its price file
    schema is built when a price table is parsed, not when the module is imported."""
    import subprocess
    import sys

    code = "import sys, speedster_dist.cost; print('pydantic' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_describe_prices_a_throughput_winner_at_its_measured_operating_point(tmp_path):
    from .test_fleet_learner import ELSEWHERE, _learner, contract_model

    learner = _learner(contract_model("mlp"), tmp_path)
    entry = learner.entries[ELSEWHERE.key]
    serving = {
        "objective": "throughput",
        "batch_size": 8,
        "concurrency": 2,
        "throughput": 1600.0,  # requests a second at 8x2, while one call's p50 is 1 ms
        "p50_ms": 6.0,
        "p99_ms": 11.0,
        "tail_ms": 11.0,
    }
    loaded = WinnerEntry(
        entry.hardware, entry.backend, entry.precision, "", {}, entry.metrics, entry.saved, serving
    )
    path = HardwareKeyedLearner(learner.io, {ELSEWHERE.key: loaded}).save(tmp_path / "tp")
    row = LearnerMetadata.read(path).describe(parse_prices({ELSEWHERE.key: 7.2}))[0]
    # 1600/s at 7.2/h -> 1.25 per 1M (batch / p50 would say 1000/s -> 2.0).
    assert row["cost_per_1m"] == pytest.approx(1.25)
    assert row["throughput_per_s"] == pytest.approx(1600.0)
    assert row["throughput_basis"] == "measured at 8x2"
    latency = LearnerMetadata.read(learner.save(tmp_path / "lat"))
    assert latency.describe(parse_prices({ELSEWHERE.key: 7.2}))[0]["throughput_basis"] == (
        "derived from p50"
    )
