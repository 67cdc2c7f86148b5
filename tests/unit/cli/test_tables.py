"""What the commands print at the end: verdicts a figure never had are never ``ok``."""

from speedster_dist.cli._rebench import format_comparisons, judged_line
from speedster_dist.results import RegressionSettings, compare_run, read_history

from ..results.conftest import nightly

CPU = "cpu-intel-xeon-avx512vnni-8c"


def table_rows(text):
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def night(history, number):
    return compare_run(read_history(history).to_pylist(), f"night-{number}", RegressionSettings())


def test_the_first_nights_are_not_judged_and_say_so(tmp_path):
    history = tmp_path / "history"
    nightly(history, 1, CPU, 0.004, 0.010)
    nightly(history, 2, CPU, 0.004, 0.005)  # the baseline halves
    found = night(history, 2)
    header, *rows = table_rows(format_comparisons(found))
    assert "\x1b" not in format_comparisons(found)  # plain unless asked
    verdicts = [dict(zip(header, row, strict=True)) for row in rows]
    assert len(verdicts) == 6 and {v["verdict"] for v in verdicts} == {"not judged"}
    halved = next(v for v in verdicts if v["role"] == "baseline" and v["figure"] == "latency_p50_s")
    assert halved["note"] == "not judged: 1 earlier of 3 needed; -50% against the previous run"
    assert judged_line(found, 3) == "0 of 6 figures judged (needs 3 nights)"


def test_judged_figures_read_ok_or_regression(tmp_path):
    history = tmp_path / "history"
    for number in (1, 2, 3):
        nightly(history, number, CPU, 0.004, 0.010)
    nightly(history, 4, CPU, 0.008, 0.010)
    found = night(history, 4)
    header, *rows = table_rows(format_comparisons(found))
    verdicts = {(r[2], r[3]): r[header.index("verdict")] for r in rows}
    assert verdicts[("winner", "latency_p50_s")] == "REGRESSION"
    assert verdicts[("baseline", "latency_p50_s")] == "ok"
    assert judged_line(found, 3) == "6 of 6 figures judged (needs 3 nights)"
    styled = format_comparisons(found, styled=True)
    assert "\x1b[1;31mREGRESSION" in styled
