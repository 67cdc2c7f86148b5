"""The report's serving section: each hardware type's frontier (throughput against p99) with
the SLO line, each type's best points, and the cheapest hardware type at the SLO, from the
history of a throughput search on two priced simulated types."""

from __future__ import annotations

import re

import pytest

from speedster_dist.results import read_history, render_report
from speedster_dist.results.report._frontiers import SLO_COLOR, model_frontiers

from ...priced_fleet import (
    BIG,
    BIG_RATE,
    PRICES,
    SMALL,
    SMALL_COST,
    SMALL_RATE,
    priced_search,
    write_history,
)
from ..page import chart_styles

HEADING = "<h2>Serving at the SLO: frontiers per hardware type</h2>"


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("history")
    write_history(root, priced_search())
    return read_history(root).to_pylist()


def _section(page):
    return page.split(HEADING)[1].split("<h2>")[0]


def test_with_prices_for_two_simulated_types_the_report_names_the_cheapest_type_at_the_slo(rows):
    section = _section(render_report(rows, prices=PRICES))
    verdict = re.search(
        r"Cheapest hardware type at the SLO \(p99 &lt;= 40 ms\): (\S+), "
        r"([0-9.]+) USD per 1M inferences at (.*?) \(([0-9]+)/s measured",
        section,
    )
    assert verdict, section[:2000]
    assert verdict.group(1) == SMALL.key  # 6x cheaper an hour, 4.4x slower: cheaper per 1M
    assert float(verdict.group(2)) == pytest.approx(SMALL_COST, rel=1e-3)
    assert verdict.group(3) == "fast fp32 slowdown=1 @ 8x2"
    assert int(verdict.group(4)) == round(SMALL_RATE)
    cells = re.findall(r"<tr>(.*?)</tr>", section)
    small = next(c for c in cells if SMALL.key in c)
    big = next(c for c in cells if BIG.key in c)
    assert "cheapest at the SLO" in small and "cheapest at the SLO" not in big
    assert f"{BIG_RATE:.4g}/s" in big and "@ 32x2" in big  # its best feasible point


def test_each_types_frontier_is_drawn_with_the_slo_line(rows):
    page = render_report(rows, prices=PRICES)
    section = _section(page)
    assert section.count("<svg") == 1
    styles = chart_styles(page, section)
    assert any(SLO_COLOR.lower() in style.lower() for style in styles)  # the dashed SLO line
    assert "SLO 40 ms" in section and SMALL.key in section and BIG.key in section
    assert f"{SMALL.key} (cheapest at the SLO)" in section  # the chart's legend says it too


def test_the_frontier_holds_the_pareto_points_infeasible_ones_past_the_slo(rows):
    ((_, (settings, types)),) = model_frontiers(rows).items()
    assert settings["latency_budget_ms"] == 40.0
    small = next(t for t in types if t.hardware_type == SMALL.key)
    assert len(small.points) == 2 * 2 * 6  # every measured point of the search
    edge = small.frontier
    assert [p.tail_s for p in edge] == sorted(p.tail_s for p in edge)
    assert edge[-1].tail_s * 1e3 > 40 and not edge[-1].feasible  # 32x2: past the SLO
    assert small.best_latency.label == "fast fp32 slowdown=1 @ 1x2"
    best = small.best_feasible
    assert best is not None and best.throughput == pytest.approx(SMALL_RATE)


def test_without_prices_no_type_is_named_and_latency_histories_have_no_section(rows, tmp_path):
    section = _section(render_report(rows))
    assert "Cheapest" not in section and "<svg" in section
    from speedster_dist.serving import Objective

    write_history(tmp_path, priced_search(Objective()))
    assert HEADING not in render_report(read_history(tmp_path).to_pylist(), prices=PRICES)


def test_the_cost_section_prices_each_types_best_load_point_at_its_measured_throughput(rows):
    page = render_report(rows, prices=PRICES)
    table = page.split("<h2>Cost per 1M inferences</h2>")[1].split("<h2>")[0]
    cells = re.findall(r"<tr>(.*?)</tr>", table)
    small = next(c for c in cells if SMALL.key in c)
    assert "measured at 8x2" in small
    cost = re.search(r"<td>([0-9.]+) USD</td>", small)
    assert cost and float(cost.group(1)) == pytest.approx(SMALL_COST, rel=1e-3)
    assert "throughput measured at each winner" in table


def test_the_winners_table_shows_each_types_best_feasible_load_point(rows):
    from speedster_dist.results._winners import find_winners

    winners = {w.hardware_type: w for w in find_winners(rows, {}, 3)}
    small, big = winners[SMALL.key], winners[BIG.key]
    assert (small.row["load_batch_size"], small.row["concurrency"]) == (8, 2)
    assert small.row["throughput"] == pytest.approx(SMALL_RATE)
    assert big.row["throughput"] == pytest.approx(BIG_RATE)
    # Over the baseline ("slow" at its default point, 32x2): twice the rate on the big type
    # (fast is 2x); on the small one the baseline is over the budget (no complete row).
    assert big.speedup == pytest.approx(2.0)
    assert small.baseline is None and small.speedup is None
    page = render_report(rows)
    table = page.split('<table id="winners">')[1].split("</table>")[0]
    assert "slowdown=1 @ 8x2" in table and "slowdown=1 @ 32x2" in table


def test_a_hostile_model_name_is_text_in_the_section_and_its_chart(tmp_path):
    hostile = "<script>alert(1)</script>$\\frac{1}{$"
    write_history(tmp_path, priced_search(), model_name=hostile)
    page = render_report(read_history(tmp_path).to_pylist(), prices=PRICES)
    section = _section(page)
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert section.count("<svg") == 1  # drawn, the name as plain text (no mathtext)


def test_each_type_keeps_its_latest_search_and_nightly_re_measures_are_no_search(tmp_path):
    from dataclasses import replace

    from speedster_dist.results import HistoryWriter, RunInfo

    from ...priced_fleet import CURVE, OBJECTIVE

    write_history(tmp_path, priced_search())  # both types
    # Later, the big type alone searched again, 2x faster still (its winner: 2x the rate).
    faster = priced_search(curve=replace(CURVE, hardware_speed={BIG.key: 8.0}))
    settings = {"metric_drop_ths": 0.05, **OBJECTIVE.identity()}
    info = RunInfo("search-2", "optimize", "bert-base", "f1ngerprint", "bert", 1, settings)
    writer = HistoryWriter(tmp_path, info)
    for result in faster.results:
        if result.candidate.hardware_key == BIG.key:
            writer.append(result)
    # Then a night re-measures the small type's winner and baseline: not a search.
    night = RunInfo("night-1", "rebench", "bert-base", "f1ngerprint", "bert", 1, settings)
    nightly = HistoryWriter(tmp_path, night)
    small_winner = faster.winners[SMALL.key]
    nightly.append(small_winner, "winner")
    baseline = faster.baseline(SMALL.key)
    assert baseline is not None
    nightly.append(baseline, "baseline")
    ((_, (_, types)),) = model_frontiers(read_history(tmp_path).to_pylist()).items()
    kinds = {t.hardware_type: t for t in types}
    assert len(kinds[SMALL.key].points) == 24  # the first search's, not the night's two
    best = kinds[BIG.key].best_feasible
    assert best is not None and best.throughput > BIG_RATE  # the second search's
