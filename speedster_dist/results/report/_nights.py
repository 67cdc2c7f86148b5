"""The report's second section: the nightly verdicts, with how many figures were judged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup

from speedster_dist.present import ms
from speedster_dist.results._regress import Comparison, RegressionSettings, compare_run
from speedster_dist.results.report._html import Row
from speedster_dist.results.report._templates import render

__all__ = ["flagged_keys", "judged_text", "nightly_verdicts", "regressions_section"]

_MAX_LATEST = 60  # figures of the latest night listed in full; above, the ok ones are counted


def _figure(figure: str, value: float | None) -> str:
    if value is None:
        return ""
    if figure == "throughput":  # inferences a second at the operating point
        return f"{value:.4g}/s"
    return ms(value) if figure.startswith("latency") else f"{value:.3g}"


def _view(c: Comparison) -> dict[str, str]:
    """A verdict as text, for ``regressions.html.j2`` (which escapes every value)."""
    return {
        "model": c.model_name + (f" ({c.learner})" if c.learner else ""),
        "hardware_type": c.hardware_type,
        "role": c.role,
        "candidate": c.candidate,
        "figure": c.figure,
        "now": _figure(c.figure, c.value),
        "median": f"{_figure(c.figure, c.median)} (n={c.history})",
        "change": "" if c.change is None else f"{c.change:+.0%}",
        "css": "bad" if c.regressed else ("good" if c.judged else "warn"),
        "verdict": c.verdict,
        "note": c.note,
    }


_HEADERS = [
    "model",
    "hardware",
    "role",
    "candidate",
    "figure",
    "now",
    "median",
    "change",
    "verdict",
    "note",
]


def judged_text(comparisons: Sequence[Comparison], min_history: int) -> str:
    """``N of M figures judged (needs 3 nights)``."""
    judged = sum(1 for c in comparisons if c.judged)
    return f"{judged} of {len(comparisons)} figures judged (needs {min_history} nights)"


def regressions_section(
    verdicts: Mapping[str, list[Comparison]], settings: RegressionSettings
) -> Markup:
    """Judged count of the latest night, regressions of every night, the latest night
    (``templates/regressions.html.j2``)."""
    if not verdicts:
        return render("regressions.html.j2", latest=None, min_history=settings.min_history)
    latest = list(verdicts)[-1]
    everything = [c for found in verdicts.values() for c in found]
    flagged = [(run, _view(c)) for run, found in verdicts.items() for c in found if c.regressed]
    shown, hidden = verdicts[latest], 0
    if len(shown) > _MAX_LATEST:  # a big fleet: what needs reading only
        worth = [c for c in shown if c.verdict != "ok" or c.note]
        shown, hidden = worth, len(shown) - len(worth)
    return render(
        "regressions.html.j2",
        latest=latest,
        judged_text=judged_text(verdicts[latest], settings.min_history),
        flagged=flagged[::-1],
        runs=len(verdicts),
        judged=sum(1 for c in everything if c.judged),
        min_history=settings.min_history,
        headers=_HEADERS,
        shown=[_view(c) for c in shown],
        hidden=hidden,
    )


def nightly_verdicts(
    rows: Sequence[Row], settings: RegressionSettings
) -> dict[str, list[Comparison]]:
    """The verdicts of each nightly run id, oldest run first."""
    runs = sorted({(r["time"], r["run_id"]) for r in rows if r["run_kind"] == "rebench"})
    run_ids = list(dict.fromkeys(run_id for _, run_id in runs))
    return {run_id: compare_run(rows, run_id, settings) for run_id in run_ids}


def flagged_keys(verdicts: Mapping[str, list[Comparison]]) -> set[Any]:
    """``(run_id, learner, hardware_type, role)`` of every regressed figure (ringed)."""
    return {
        (run, c.learner, c.hardware_type, c.role)
        for run, found in verdicts.items()
        for c in found
        if c.regressed
    }
