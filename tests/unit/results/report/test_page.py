import re
from datetime import timedelta

import pytest

from speedster_dist.records import TrialStatus
from speedster_dist.results import read_history, render_report, write_report

from ..conftest import DAY0, nightly, run, trial
from ..fleet import CPU, GPU, fleet
from ..page import cells, chart_text


def page(history, **kw):
    return render_report(read_history(history).to_pylist(), **kw)


def winners_by_hardware(html):
    header, *rows = cells(html).rows
    return header, {row[1]: dict(zip(header, row, strict=True)) for row in rows}


def test_the_page_reads_winners_then_regressions_then_plots_then_failures(history):
    fleet(history)
    html = page(history, title="Fleet <nightly>")
    assert html.startswith("<!DOCTYPE html>") and "<title>Fleet &lt;nightly&gt;</title>" in html
    order = [
        "What runs where",
        "Regressions (nightly re-benchmarks)",
        "Plots",
        "Rejected and failed candidates",
    ]
    at = [html.index(f"<h2>{section}") for section in order]
    assert at == sorted(at)
    assert "1 model, 2 hardware types, 17 trials (14 complete, 1 failed, 2 rejected)" in html
    assert html.count('class="chart line-chart"') == 2  # bert-base on CPU and on GPU
    assert html.count('class="chart scatter-chart"') == 2
    assert html.count('class="chart bar-chart"') == 1


def test_the_winners_table_says_what_runs_where(history):
    fleet(history)
    _, rows = winners_by_hardware(page(history))
    assert set(rows) == {CPU, GPU}
    cpu, gpu = rows[CPU], rows[GPU]
    # The CPU winner as its latest night re-measured it: 2x slower than its median.
    assert (cpu["backend"], cpu["precision"], cpu["knobs"]) == ("onnxruntime", "int8/dynamic", "-")
    assert (cpu["p50"], cpu["p90"], cpu["speed-up"]) == ("8 ms", "8.8 ms", "1.25x")
    assert cpu["confirmed"] == "REGRESSED on 2024-03-06"
    assert cpu["measured"] == "2024-03-06 02:00 UTC nightly re-measure"
    assert cpu["model"] == "bert-base learner bert"
    # The GPU winner from the search: 4x faster than the GPU baseline, never re-measured.
    assert (gpu["p50"], gpu["speed-up"], gpu["metric drop"]) == (
        "1 ms",
        "2.50x",
        "0.012 (limit 0.05)",
    )
    assert gpu["confirmed"] == "not re-measured"
    assert gpu["measured"] == "2024-03-01 02:00 UTC optimize search"


def test_the_speedup_chart_has_full_labels_and_the_regression_is_ringed(history):
    fleet(history)
    html = page(history)
    drawn = chart_text(html)
    assert "1.25xonnxruntimeint8/dynamic" in drawn and "2.50xonnxruntimeint8/dynamic" in drawn
    assert "bert-base·cpu-intel-xeon-avx512vnni-8c" in drawn  # wrapped, never cut
    assert "regression(ringed)" in drawn
    assert "stroke: #dd0000" in html  # the regressed points are ringed in red


def test_nothing_judged_never_reads_as_no_regression(history):
    writer = run(history, "search")
    writer.append(trial("torch", "fp32", CPU, 0.010, baseline=True))
    writer.append(trial("onnxruntime", "int8", CPU, 0.004, technique="dynamic"))
    nightly(history, 1, CPU, 0.004, 0.010)
    html = page(history)
    assert cells(html).judged == "Latest night (night-1): 0 of 6 figures judged (needs 3 nights)."
    assert "No regression" not in html and "Nothing judged yet" in html
    latest = cells(html, "latest-night").rows[1:]
    assert {row[8] for row in latest} == {"not judged"}  # never "ok"
    _, rows = winners_by_hardware(html)
    assert rows[CPU]["confirmed"] == "re-measured 1x, not judged yet (needs 3 nights)"


def test_enough_steady_nights_confirm_the_winner(history):
    writer = run(history, "search")
    writer.append(trial("torch", "fp32", CPU, 0.010, baseline=True))
    writer.append(trial("onnxruntime", "int8", CPU, 0.004, technique="dynamic"))
    for night in range(1, 5):
        nightly(history, night, CPU, 0.004, 0.010)
    html = page(history)
    assert "4 of 6 figures judged" not in html
    assert cells(html).judged == "Latest night (night-4): 6 of 6 figures judged (needs 3 nights)."
    assert "No regression among the 6 judged figures of 4 runs." in html
    _, rows = winners_by_hardware(html)
    assert rows[CPU]["confirmed"] == "confirmed: 4 nights, latest 2024-03-05"


def test_a_baseline_that_halves_is_flagged(history):
    nightly(history, 1, CPU, 0.004, 0.010)
    nightly(history, 2, CPU, 0.004, 0.005)  # the baseline halves: not judged yet, but said
    latest = cells(page(history), "latest-night").rows[1:]
    baseline = next(r for r in latest if r[2] == "baseline" and r[4] == "latency_p50_s")
    assert baseline[8] == "not judged"
    assert "-50% against the previous run" in baseline[9]
    _, rows = winners_by_hardware(page(history))
    assert rows[CPU]["speed-up"] == "1.25x baseline -50% since the run before"
    for night in (3, 4, 5):
        nightly(history, night, CPU, 0.004, 0.010)
    nightly(history, 6, CPU, 0.004, 0.005)  # judged: faster is no regression, but odd
    latest = cells(page(history), "latest-night").rows[1:]
    baseline = next(r for r in latest if r[2] == "baseline" and r[4] == "latency_p50_s")
    assert baseline[8] == "ok" and "-50% against its median: faster" in baseline[9]


def test_quick_measure_runs_are_marked(history):
    for night in (1, 2):
        nightly(history, night, CPU, 0.004, 0.010)
    nightly(history, 3, CPU, 0.004, 0.010, quick=True)
    html = page(history)
    _, rows = winners_by_hardware(html)
    assert rows[CPU]["measured"] == "2024-03-04 02:00 UTC nightly re-measure quick-measure: noisy"
    latest = cells(html, "latest-night").rows[1:]
    timed = [row for row in latest if row[4].startswith("latency")]
    assert len(timed) == 4 and all("quick-measure run: noisy" in row[9] for row in timed)
    assert "hollow:quick" in chart_text(html)


def test_rejected_candidates_are_drawn_past_the_threshold_and_listed(history):
    fleet(history)
    html = page(history)
    drawn = chart_text(html)
    assert drawn.count("acceptedmetricdrop:0.05") == 2  # the threshold, on both drop plots
    assert drawn.count("rejected,nevertimed(1;drawnatthetop)") == 2
    failures = cells(html, "failures").rows
    assert failures[0] == [
        "time (UTC)",
        "model",
        "hardware",
        "candidate",
        "status",
        "drop",
        "run",
        "reason",
    ]
    assert [(r[3], r[4], r[5]) for r in failures[1:]] == [
        ("tensorrt fp16", "failed", ""),
        ("openvino int8", "rejected", "0.2"),
        ("openvino int8", "rejected", "0.2"),
    ]
    assert failures[1][7] == "RuntimeError: <engine> & 'friends' failed"  # escaped, whole


def test_long_names_are_wrapped_in_full(history):
    hardware = "cpu-amd-epyc-9654-96-core-processor-avx512bf16-avx512vnni-avx512fp16-192c"
    knobs = {"inference_num_threads": 8, "performance_hint": "LATENCY"}
    writer = run(history, "search")
    writer.append(trial("torch", "fp32", hardware, 0.010, baseline=True))
    writer.append(trial("openvino", "fp32", hardware, 0.005, knobs=knobs))
    html = page(history)
    _, rows = winners_by_hardware(html)
    assert rows[hardware]["knobs"] == "inference_num_threads=8 performance_hint=LATENCY"
    drawn = chart_text(html)
    assert f"bert-base·{hardware}" in drawn  # the speed-up bar's label
    assert "openvinofp32inference_num_threads=8performance_hint=LATENCY" in drawn  # a legend


def test_other_sections_and_winner_columns_plug_in(history):
    fleet(history)
    html = page(
        history,
        winner_columns=[("cost per 1M inferences", lambda w: f"${w.speedup:.2f}")],
        sections=[("Cost <per hardware>", "<p id='cost'>priced</p>")],
    )
    header, rows = winners_by_hardware(html)
    assert header[-1] == "cost per 1M inferences" and rows[GPU][header[-1]] == "$2.50"
    assert html.index("<h2>Regressions") < html.index("<h2>Cost &lt;per hardware&gt;")
    assert html.index("<p id='cost'>") < html.index("<h2>Plots")


def test_the_page_is_self_contained(history):
    fleet(history)
    html = page(history)
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html
    urls = set(re.findall(r"https?://[^\"' )]+", html))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}  # namespaces


def test_no_rebench_and_no_failure_say_so(history):
    run(history, "search").append(trial("torch", "fp32", CPU, 0.01, baseline=True))
    html = page(history)
    assert "No nightly re-benchmark" in html and "0 figures judged (needs 3 nights)" in html
    assert "No rejected or failed candidate." in html


def test_failures_table_is_capped(history):
    writer = run(history, "search")
    for i in range(205):
        writer.append(
            trial("fake", "fp32", CPU, reason=f"boom {i}", when=DAY0 + timedelta(seconds=i))
        )
    html = page(history)
    assert "205 failed." in html and "Showing the newest 200 of 205" in html
    assert "boom 204" in html and "boom 4<" not in html  # newest first


def test_a_failed_night_is_a_regression_shown_with_the_searchs_figures(history):
    writer = run(history, "search")
    writer.append(trial("torch", "fp32", CPU, 0.010, baseline=True))
    writer.append(trial("onnxruntime", "int8", CPU, 0.004, technique="dynamic"))
    nightly(history, 1, CPU, 0.004, 0.010)
    nightly(history, 2, CPU, None, 0.010, status=TrialStatus.FAILED)
    _, rows = winners_by_hardware(page(history))
    assert rows[CPU]["confirmed"] == "REGRESSED on 2024-03-03"  # it ran, and now fails
    assert rows[CPU]["p50"] == "4 ms"
    assert rows[CPU]["measured"] == "2024-03-01 02:00 UTC optimize search"


def test_an_empty_history_is_refused(history, tmp_path):
    with pytest.raises(ValueError, match="no trial"):
        render_report([])
    fleet(history)
    out = write_report(history, tmp_path / "deep" / "report.html")
    assert out.read_text().count("<svg") == 5


def test_a_big_night_lists_only_the_figures_worth_reading(history):
    for night in range(1, 5):
        for i in range(11):  # 11 learners x 2 roles x 3 figures = 66 figures a night
            slow = night == 4 and i == 0
            nightly(history, night, CPU, 0.008 if slow else 0.004, 0.010, learner=f"l{i:02d}")
    html = page(history)
    assert cells(html).judged == "Latest night (night-4): 66 of 66 figures judged (needs 3 nights)."
    latest = cells(html, "latest-night").rows[1:]
    assert [(r[0], r[4], r[8]) for r in latest] == [
        ("bert-base (l00)", "latency_p50_s", "REGRESSION"),
        ("bert-base (l00)", "latency_p90_s", "REGRESSION"),
    ]
    assert "64 figures ok, without notes: not shown." in html
    drawn = chart_text(html)
    assert "l00:onnxruntimeint8/dynamic" in drawn and "l10:baseline:torchfp32" in drawn


def test_a_bar_text_past_the_axes_stays_inside_the_saved_chart():
    """The text at a bar's end (its winner's label) is part of the crop: a longer text makes
    a wider chart, and every line of it starts inside the SVG's width."""
    import re

    from speedster_dist.results.report._charts import Bar, bar_chart

    def drawn(text: str) -> tuple[float, list[float]]:
        svg = bar_chart("speed-up", [Bar("model · cpu", 3.1, "#1f77b4", text)], "x")
        found = re.search(r'width="([\d.]+)pt"', svg)
        assert found is not None
        width = float(found.group(1))
        starts = [float(x) for x in re.findall(r'text-anchor: start" x="([\d.]+)"', svg)]
        return width, starts

    short_width, _ = drawn("3.10x openvino bf16")
    long_text = "3.10x openvino bf16 inference_num_threads=0 num_streams=0 performance_hint=LATENCY"
    long_width, starts = drawn(long_text)
    assert long_width > short_width
    assert starts and all(x < long_width - 100 for x in starts)  # room for the text after it
