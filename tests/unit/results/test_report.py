import re
from datetime import timedelta

import pytest

from speedster_dist.results import read_history, render_report, write_report

from .conftest import DAY0, run, trial
from .fleet import CPU, fleet


def test_the_page_has_every_section_and_a_plot_per_model_and_hardware(history):
    fleet(history)
    html = render_report(read_history(history).to_pylist(), title="Fleet <nightly>")
    assert html.startswith("<!DOCTYPE html>") and "<title>Fleet &lt;nightly&gt;</title>" in html
    for section in (
        "Overview",
        "Regressions",
        "Latency over time",
        "Speed-up per hardware type",
        "Latency against metric drop",
        "Failures",
    ):
        assert f"<h2>{section}" in html
    assert html.count('class="chart line-chart"') == 2  # bert-base on CPU and on GPU
    assert html.count('class="chart scatter-chart"') == 2
    assert html.count('class="chart bar-chart"') == 1
    # Speed-ups of the latest run with a baseline: the night-5 CPU rerun, the search on GPU.
    assert "1.25x</text>" in html and "2.50x</text>" in html
    assert "2 regressed figures" in html and "+100%" in html
    assert 'stroke="#d00"' in html  # the regressed points are ringed in red
    assert "RuntimeError: &lt;engine&gt; &amp; &#x27;friends&#x27; failed" in html


def test_the_page_is_self_contained(history):
    fleet(history)
    html = render_report(read_history(history).to_pylist())
    assert "<script" not in html and "<link" not in html and "@import" not in html
    urls = set(re.findall(r"https?://[^\"' )]+", html))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched


def test_no_rebench_and_no_failure_say_so(history):
    run(history, "search").append(trial("torch", "fp32", CPU, 0.01, baseline=True))
    html = render_report(read_history(history).to_pylist())
    assert "No nightly re-benchmark" in html and "No failed trial." in html


def test_failures_table_is_capped(history):
    writer = run(history, "search")
    for i in range(205):
        writer.append(
            trial("fake", "fp32", CPU, reason=f"boom {i}", when=DAY0 + timedelta(seconds=i))
        )
    html = render_report(read_history(history).to_pylist())
    assert "205 failed trials" in html and "Showing 200 of 205" in html
    assert "boom 204" in html and "boom 4<" not in html  # newest first


def test_an_empty_history_is_refused(history, tmp_path):
    with pytest.raises(ValueError, match="no trial"):
        render_report([])
    fleet(history)
    out = write_report(history, tmp_path / "deep" / "report.html")
    assert out.read_text().count("<svg") == 5
