"""Names are the user's text: a model, backend or technique name that matplotlib would read
as mathtext (``$\\frac{1}{$``) or TeX is drawn as it is, and ``speedster-dist report`` works."""

from datetime import timedelta
from html.parser import HTMLParser

from speedster_dist.cli import main
from speedster_dist.records import TrialStatus
from speedster_dist.results import read_history, render_report

from .conftest import DAY0, run, trial
from .page import chart_text

MATH = r"$\frac{1}{$"  # unbalanced mathtext: matplotlib's parser raises on it
CPU = "cpu-x"


def test_names_holding_mathtext_are_drawn_as_plain_text(history, tmp_path, capsys):
    for night in range(2):  # two runs: the latency chart has a line, not a lone point
        writer = run(history, f"run-{night}", model=f"model {MATH}", learner=MATH)
        when = DAY0 + timedelta(days=night)
        writer.append(trial("torch", "fp32", CPU, 0.010, baseline=True, when=when))
        writer.append(trial(MATH, "fp32", CPU, 0.004, drop=0.001, technique=MATH, when=when))
        writer.append(trial(MATH, "int8", CPU, status=TrialStatus.REJECTED, drop=0.5, when=when))
    out = tmp_path / "report.html"
    assert main(["report", "--history", str(history), "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert html.count("<svg") == 3  # latency over time, speed-up, latency against drop
    drawn = chart_text(html)
    assert f"model{MATH}oncpu-x" in drawn  # a chart's title, dollars and backslash kept
    assert f"{MATH}fp32/{MATH}" in drawn  # the latency chart's legend: backend and technique
    assert f"model{MATH}·cpu-x" in drawn  # the speed-up bar's label


class _Labels(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.labels: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "svg":
            self.labels.append(dict(attrs)["aria-label"])


def test_a_charts_accessible_name_keeps_quotes_and_markup_as_text(history):
    name = 'bert "base" <b>&amp;'
    writer = run(history, "search", model=name)
    writer.append(trial("torch", "fp32", CPU, 0.010, baseline=True))
    writer.append(trial("onnxruntime", "fp32", CPU, 0.004, drop=0.001))
    parser = _Labels()
    parser.feed(render_report(read_history(history).to_pylist()))
    assert f"{name} on {CPU}" in parser.labels  # parsed back to the very name, not markup
