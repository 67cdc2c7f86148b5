"""The report's cost section: priced winners per model, the fastest and the cheapest type,
and the latency/cost frontier as an inline matplotlib SVG."""

from __future__ import annotations

import re

from speedster_dist.cost import parse_prices
from speedster_dist.results import read_history, render_report
from speedster_dist.results.report import FRONTIER_COLOR

from ..fleet import CPU, GPU, fleet
from ..page import chart_styles


def test_with_prices_the_report_has_cost_per_million_and_the_frontier(tmp_path):
    fleet(tmp_path / "history")
    rows = read_history(tmp_path / "history").to_pylist()
    # CPU best: 4 ms (250/s) at 0.36/h -> 0.4 per 1M; GPU best: 1 ms (1000/s) at 3.6/h -> 1.
    prices = parse_prices({"prices": {CPU: 0.36, GPU: 3.6}, "source": "test list"})
    page = render_report(rows, prices=prices)
    assert "<h2>Cost per 1M inferences</h2>" in page and "test list" in page
    table = page.split("<h2>Cost per 1M inferences</h2>")[1].split("<h2>")[0]
    cells = re.findall(r"<tr>(.*?)</tr>", table)
    gpu_row = next(c for c in cells if GPU in c)
    cpu_row = next(c for c in cells if CPU in c)
    assert "1 ms" in gpu_row and "1 USD" in gpu_row and "fastest" in gpu_row
    assert "4 ms" in cpu_row and "0.4 USD" in cpu_row and "cheapest" in cpu_row
    assert table.count("<svg") == 1  # the frontier plot, inline, drawn in the frontier's colour
    assert any(FRONTIER_COLOR in style for style in chart_styles(page, table))
    assert "<?xml" not in page  # the SVG is inline, not a document of its own
    assert "Cost per 1M" not in render_report(rows)  # no prices, no section
