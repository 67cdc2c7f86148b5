import io
import re
import time

from speedster_dist.present import SearchProgress
from speedster_dist.records import Candidate, LatencyStats, TrialResult, TrialStatus

CPU = "cpu-intel-xeon-avx512vnni-8c"


def result(p50=None, key=CPU, precision="fp32", reason=""):
    candidate = Candidate.make("fake", precision, key, knobs={"slowdown": 1})
    if p50 is None:
        return TrialResult(candidate, TrialStatus.FAILED, reason or "boom")
    latency = LatencyStats(10, p50, 0.0, p50, p50, p50, p50, 10 * p50)
    return TrialResult(candidate, TrialStatus.COMPLETE, latency=latency, metric_drop=0.0)


def feed(progress):
    progress.plan(CPU, 4)
    for r in (result(0.004), result(None, reason="no kernel"), result(0.002, precision="fp16")):
        progress(r)
    progress.close()


def test_plain_output_is_one_parseable_line_per_trial():
    out = io.StringIO()
    progress = SearchProgress(enabled=True, stream=out)  # not a terminal: plain
    feed(progress)
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue() and len(lines) == 3
    pattern = r"\s*\d+\.\ds \[trial (\d)\] (\S+) (.+): (complete|failed) ?(.*)"
    matches = [re.fullmatch(pattern, line) for line in lines]
    parsed = [m.groups() for m in matches if m is not None]
    assert len(parsed) == 3, lines
    assert [p[0] for p in parsed] == ["1", "2", "3"]
    assert {p[1] for p in parsed} == {CPU}
    assert parsed[1][3:] == ("failed", "(no kernel)") and parsed[2][4] == "2.00 ms"


def test_quiet_prints_nothing_but_keeps_the_best():
    out = io.StringIO()
    progress = SearchProgress(enabled=False, stream=out, styled=True)
    feed(progress)
    assert out.getvalue() == ""
    assert progress.best[CPU].candidate.label == "fake fp16 slowdown=1"


def test_a_terminal_gets_a_bar_per_hardware_type(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # a wide terminal: nothing cropped
    out = io.StringIO()
    progress = SearchProgress(enabled=True, budget_s=600, stream=out, styled=True)
    progress.plan("gpu-nvidia-l4", 2)
    feed(progress)
    screen = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.getvalue())
    assert "[trial 3]" in screen  # the trial lines are printed above the bars
    last = {}
    for line in screen.splitlines():
        for key in (CPU, "gpu-nvidia-l4"):
            if line.startswith(key):
                last[key] = line
    assert "3/4" in last[CPU] and "best: 2 ms fake fp16 slowdown=1" in last[CPU]
    assert re.search(r"(9|10)m \d\ds left", last[CPU])
    assert "0/2" in last["gpu-nvidia-l4"] and "best: -" in last["gpu-nvidia-l4"]


def test_time_left_in_the_budget():
    assert SearchProgress(budget_s=float("inf")).time_left() == "no time limit"
    progress = SearchProgress(budget_s=75)
    assert progress.time_left() in ("1m 15s left", "1m 14s left", "1m 13s left")
    progress.started = time.monotonic() - 100
    assert progress.time_left() == "0s left"
