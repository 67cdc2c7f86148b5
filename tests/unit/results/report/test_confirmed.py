"""The report reads a search's confirmation (its best candidates and baseline re-timed side by
side, role "confirmed"): the winners table shows the confirmed figures, and nothing else
counts them as trials or as nightly figures."""

from datetime import timedelta

from speedster_dist.results import compare_run, read_history, render_report
from speedster_dist.results.report._costs import _best_per_type

from ..conftest import DAY0, confirm, nightly, run, trial
from ..fleet import CPU, GPU, fleet
from ..page import cells

BASE_ROUNDS = [0.0100, 0.0098, 0.0102, 0.0099, 0.0101]
OV_ROUNDS = [0.0034, 0.0033, 0.0035, 0.0032, 0.0034]  # re-timed, openvino beats onnxruntime
ORT_ROUNDS = [0.0050, 0.0049, 0.0051, 0.0048, 0.0052]


def winners_by_hardware(rows):
    header, *lines = cells(render_report(rows)).rows
    return {line[1]: dict(zip(header, line, strict=True)) for line in lines}


def reordered_search(history):
    """The search's fastest trial (onnxruntime) loses its place once re-timed (openvino)."""
    writer = run(history, "search")
    base = trial("torch", "fp32", CPU, 0.010, baseline=True)
    ort = trial("onnxruntime", "int8", CPU, 0.004, drop=0.01, technique="dynamic")
    ov = trial("openvino", "int8", CPU, 0.0045, drop=0.02, knobs={"threads": 2})
    for t in (base, ort, ov):
        writer.append(t)
    confirm(writer, [(base, BASE_ROUNDS), (ort, ORT_ROUNDS), (ov, OV_ROUNDS)])
    return read_history(history).to_pylist()


def test_the_confirmed_fastest_wins_with_its_confirmed_figures(history):
    rows = reordered_search(history)
    shown = winners_by_hardware(rows)[CPU]
    ratios = [b / c for b, c in zip(BASE_ROUNDS, OV_ROUNDS, strict=True)]
    spread = f"({min(ratios):.2f}-{max(ratios):.2f}x)"
    assert (shown["backend"], shown["precision"], shown["knobs"]) == (
        "openvino",
        "int8",
        "threads=2",
    )
    assert shown["p50"] == "3.4 ms (rounds 3.2 ms-3.5 ms)"  # the median of the round medians
    assert shown["p90"] == "4.95 ms (search)"  # its trial's: re-timing measures medians only
    assert shown["speed-up"] == f"{0.0100 / 0.0034:.2f}x {spread}"
    assert (
        shown["confirmed"] == f"re-timed side by side: 5 rounds {spread}; not re-measured at night"
    )
    assert shown["metric drop"] == "0.02 (limit 0.05)"
    assert shown["measured"] == "2024-03-01 02:05 UTC optimize search"


def test_a_confirmation_without_its_baseline_leaves_the_searchs_winner(history):
    writer = run(history, "search")
    base = trial("torch", "fp32", CPU, 0.010, baseline=True)
    ort = trial("onnxruntime", "int8", CPU, 0.004, technique="dynamic")
    ov = trial("openvino", "int8", CPU, 0.0045)
    for t in (base, ort, ov):
        writer.append(t)
    confirm(writer, [(ort, ORT_ROUNDS), (ov, OV_ROUNDS)])  # a torn record: no baseline
    shown = winners_by_hardware(read_history(history).to_pylist())[CPU]
    assert (shown["backend"], shown["p50"], shown["speed-up"]) == ("onnxruntime", "4 ms", "2.50x")
    assert shown["confirmed"] == "not re-measured"


def test_nights_take_precedence_over_the_confirmation(history):
    fleet(history, confirmed=True)
    rows = read_history(history).to_pylist()
    by_hw = winners_by_hardware(rows)
    cpu, gpu = by_hw[CPU], by_hw[GPU]
    # the CPU winner was re-measured at night: as without a confirmation
    assert (cpu["p50"], cpu["speed-up"], cpu["confirmed"]) == (
        "8 ms",
        "1.25x",
        "REGRESSED on 2024-03-06",
    )
    # the GPU winner never was: its confirmed figures (2.5x in every round but the paired ones)
    base = [p * 0.25 for p in (0.0101, 0.0099, 0.0100, 0.0102, 0.0098)]
    mine = [p / 2.5 for p in base[1:] + base[:1]]
    ratios = [b / c for b, c in zip(base, mine, strict=True)]
    spread = f"({min(ratios):.2f}-{max(ratios):.2f}x)"
    assert gpu["backend"] == "onnxruntime" and gpu["speed-up"] == f"2.50x {spread}"
    assert gpu["confirmed"] == f"re-timed side by side: 5 rounds {spread}; not re-measured at night"


def test_the_overview_plots_and_costs_count_trials_not_re_timings(history):
    fleet(history, confirmed=True)
    rows = read_history(history).to_pylist()
    assert sum(r["role"] == "confirmed" for r in rows) == 4
    html = render_report(rows)
    assert (
        "1 model, 2 hardware types, 17 trials (14 complete, 1 failed, 2 rejected), "
        "4 confirmation re-timings" in html
    )
    assert html.count('class="chart line-chart"') == 2


def test_the_cost_sections_best_is_a_trial_never_its_faster_re_timing(history):
    rows = reordered_search(history)
    ((row, _),) = _best_per_type(rows)["bert-base"].values()
    assert (row["role"], row["backend"], row["latency_p50_s"]) == (
        "candidate",
        "onnxruntime",
        0.004,
    )


def test_a_later_search_without_confirmation_is_shown_as_searched(history):
    reordered_search(history)
    later = DAY0 + timedelta(days=1)
    writer = run(history, "search-2")
    writer.append(trial("torch", "fp32", CPU, 0.010, baseline=True, when=later))
    writer.append(trial("onnxruntime", "int8", CPU, 0.002, technique="dynamic", when=later))
    shown = winners_by_hardware(read_history(history).to_pylist())[CPU]
    assert (shown["backend"], shown["speed-up"], shown["confirmed"]) == (
        "onnxruntime",
        "5.00x",
        "not re-measured",
    )


def test_confirmed_rows_are_never_a_nightly_series(history):
    for night in range(1, 5):
        nightly(history, night, CPU, 0.004, 0.010)
    # a (hypothetical) re-timing recorded by a rebench run: not one of its series
    when = DAY0 + timedelta(days=4, minutes=5)
    writer = run(history, "night-4", "rebench")
    base = trial("torch", "fp32", CPU, 0.010, baseline=True, when=when)
    best = trial("onnxruntime", "int8", CPU, 0.004, technique="dynamic", when=when)
    assert len(confirm(writer, [(base, [0.1] * 5), (best, [0.2] * 5)], when)) == 2
    verdicts = compare_run(read_history(history).to_pylist(), "night-4")
    assert {c.role for c in verdicts} == {"winner", "baseline"}
    assert not any(c.regressed for c in verdicts)
    assert all(c.value is None or c.value < 0.05 for c in verdicts)  # not the 0.1 s re-timing


def test_the_report_command_counts_trials_not_re_timings(history, tmp_path, capsys):
    from speedster_dist.cli import EXIT_OK, main

    fleet(history, confirmed=True)
    out = tmp_path / "report.html"
    assert main(["report", "--history", str(history), "--out", str(out)]) == EXIT_OK
    assert "report of 17 trials from 6 runs" in capsys.readouterr().err
    assert "4 confirmation re-timings" in out.read_text()
