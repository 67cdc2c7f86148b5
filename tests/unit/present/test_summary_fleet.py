"""The summary's fleet view of a throughput search on two priced simulated hardware types:
per type the best-latency and the best feasible throughput point, and the cost per 1M at
the throughput measured at each winner's operating point (not batch / p50)."""

from __future__ import annotations

import re

import pytest

from speedster_dist.present import format_summary

from ..priced_fleet import (
    BIG,
    BIG_COST,
    BIG_RATE,
    PRICES,
    SMALL,
    SMALL_COST,
    SMALL_RATE,
    priced_search,
)


@pytest.fixture(scope="module")
def summary():
    return format_summary(priced_search(), 1, prices=PRICES)


def _block(summary, key):
    return summary.split(f"Hardware type {key}:")[1].split("Hardware type")[0]


def test_each_type_shows_its_best_latency_and_best_feasible_throughput_point(summary):
    small = _block(summary, SMALL.key)
    assert "load points (throughput, p99 budget 40 ms):" in small
    # 1x2 on "fast": a 2 ms call (4 ms halved), no batch wait, two in flight: 1000/s.
    assert "best latency:    fast fp32 slowdown=1 @ 1x2: 1000 requests/s, p99 2 ms" in small
    # 8x2: a 9 ms call, 7 requests' wait at 1778/s: 7 / 1778 + 9 ms = 12.9 ms.
    assert (
        "best throughput: fast fp32 slowdown=1 @ 8x2: 1778 requests/s, p99 12.9 ms (feasible)"
    ) in small
    # The baseline backend ("slow", fp32) at its best feasible point: 8x2, an 18 ms call,
    # 16 / 0.018 = 889/s, p99 7 / 889 + 18 ms = 25.9 ms (32x2 is over the budget).
    assert (
        "baseline's best: slow fp32 slowdown=1 @ 8x2: 888.9 requests/s, p99 25.9 ms "
        "(best throughput 2.00x)"
    ) in small
    big = _block(summary, BIG.key)  # 4x faster: 32x2 fits the budget (p99 12.2 ms)
    assert "best throughput: fast fp32 slowdown=1 @ 32x2: 7758 requests/s, p99 12.2 ms" in big
    assert "latency (p50 per request)" in small  # a load point's p50, not one call's
    # the baseline (slow @ 32x2) and the winner (8x2) wait for different batches: no ratio
    latency_row = next(line for line in small.splitlines() if "p50 per request" in line)
    assert "(other load points)" in latency_row


def test_cost_per_million_uses_the_measured_throughput_and_names_the_cheapest_at_the_slo(
    summary,
):
    assert "throughput measured at each winner's operating point" in summary
    small = re.search(rf"  {SMALL.key}: ([0-9.]+) \(.*?([0-9]+)/s measured at 8x2", summary)
    big = re.search(rf"  {BIG.key}: ([0-9.]+) \(.*?([0-9]+)/s measured at 32x2", summary)
    assert small and big
    assert float(small.group(1)) == pytest.approx(SMALL_COST, rel=1e-3)  # 0.01563
    assert float(big.group(1)) == pytest.approx(BIG_COST, rel=1e-3)  # 0.02148
    assert int(small.group(2)) == round(SMALL_RATE) and int(big.group(2)) == round(BIG_RATE)
    assert f"Fastest hardware type: {BIG.key}" in summary
    assert (
        f"Cheapest hardware type at the SLO (p99 <= 40 ms): {SMALL.key} (0.01563 USD per 1M"
    ) in summary


def test_a_latency_search_prints_no_load_points():
    from speedster_dist.serving import Objective

    text = format_summary(priced_search(Objective()), 1, prices=PRICES)
    assert "load points" not in text and "derived from p50" in text


def test_the_fleet_table_shows_what_each_winner_serves_and_the_type_serving_most(summary):
    fleet = summary.split("Fleet: 2 hardware types")[1]
    small = next(line for line in fleet.splitlines() if SMALL.key in line)
    big = next(line for line in fleet.splitlines() if BIG.key in line)
    assert "| 1778 " in small and "12.9 ms" in small
    # the speed-up of a load search is in throughput: slow @ 32x2 serves 64 / 0.066 s = 970/s
    assert f"| {SMALL_RATE / (64 / 0.066):.2f}x " in small
    assert "| 7758 " in big and "12.2 ms" in big
    assert (
        f"Most throughput within the constraints: {BIG.key} (fast fp32 slowdown=1 @ 32x2, "
        "7758 requests/s, p99 12.2 ms)"
    ) in fleet


def test_a_memory_cap_names_the_winner_not_a_dominated_point_and_no_winner_says_why():
    from dataclasses import replace

    from ..priced_fleet import OBJECTIVE

    # 100 MB + 10 MB per request in flight: 8x2 (260 MB) is over 200 MB; 1x2 serves most.
    capped = format_summary(priced_search(replace(OBJECTIVE, max_memory_mb=200.0)), 1)
    small = _block(capped, SMALL.key)
    assert "best throughput: fast fp32 slowdown=1 @ 1x2: 1000 requests/s" in small
    # 0.4 ms: even one request on the big type (a 0.5 ms call) is over it.
    none = format_summary(priced_search(replace(OBJECTIVE, latency_budget_ms=0.4)), 1)
    big = _block(none, BIG.key)
    assert "no winner:" in big
    assert "best latency:    fast fp32 slowdown=1 @ 1x2: 4000 requests/s, p99 0.5 ms" in big
    assert "best throughput: none feasible (p99 0.5 ms is over the latency budget of 0.4 ms)" in big
    assert "baseline's best: no complete point (slow: 12 infeasible)" in big
