"""The sweep's live table: model x hardware type, each with its status and best so far."""

from __future__ import annotations

from speedster_dist.fleet import trial_json
from speedster_dist.present import SweepBoard
from speedster_dist.records import Candidate, LatencyStats, TrialResult, TrialStatus


def _trial(hw, label, status, p50=None):
    """A job's trial event: the trial's --json document (fleet/_sweep_child.py sends it)."""
    backend, precision = label.split()
    latency = LatencyStats(8, p50, 0.0, p50, p50, p50, p50, 8 * p50) if p50 else None
    result = TrialResult(
        Candidate.make(backend, precision, hw), TrialStatus(status), "" if p50 else "x", latency
    )
    return {"event": "trial", **trial_json(result)}


def test_the_table_shows_each_model_and_type_with_status_and_best_so_far():
    board = SweepBoard(["bert", "mlp", "vit"])
    board.job("bert", "running")
    board.event("bert", _trial("cpu-a", "torch fp32", "complete", 0.010))
    board.event("bert", _trial("cpu-a", "ov int8", "complete", 0.004))
    board.event("bert", _trial("cpu-a", "ort fp16", "failed"))
    board.event("bert", _trial("gpu-b", "torch fp32", "complete", 0.002))
    board.job("mlp", "running")
    board.event("mlp", _trial("cpu-a", "torch fp32", "complete", 0.001))
    board.job("mlp", "failed")
    rows = {(r[0], r[1]): r[2:] for r in board.rows()}
    assert rows[("bert", "cpu-a")] == ["searching", "3", "4 ms ov int8"]
    assert rows[("bert", "gpu-b")] == ["searching", "1", "2 ms torch fp32"]
    assert rows[("mlp", "cpu-a")] == ["failed", "1", "1 ms torch fp32"]
    assert rows[("vit", "-")] == ["queued", "0", "-"]
    winner = {"hardware_type": "cpu-a", "label": "ov int8", "latency_p50_s": 0.004}
    board.event("bert", {"event": "done", "winners": [winner]})
    board.job("bert", "done")
    status = {(r[0], r[1]): r[2] for r in board.rows()}
    assert status[("bert", "cpu-a")] == "done" and status[("bert", "gpu-b")] == "no winner"
    lines = board.render().splitlines()  # plain: one line per row, ASCII boxes
    header = [cell.strip() for cell in lines[1].strip("|").split("|")]
    assert header == ["model", "hardware type", "status", "trials", "best so far (p50)"]
    bert_cpu = next(line for line in lines if "bert" in line and "cpu-a" in line)
    assert [c.strip() for c in bert_cpu.strip("|").split("|")] == [
        "bert",
        "cpu-a",
        "done",
        "3",
        "4 ms ov int8",
    ]
    assert "\x1b" not in "\n".join(lines) and "\x1b" in board.render(styled=True)
