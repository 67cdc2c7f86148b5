"""The report's second section: the nightly verdicts, with how many figures were judged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from speedster_dist.present import ms
from speedster_dist.results._regress import Comparison, RegressionSettings, compare_run
from speedster_dist.results.report._html import Row, table

__all__ = ["flagged_keys", "judged_text", "nightly_verdicts", "regressions_section"]

_MAX_LATEST = 60  # figures of the latest night listed in full; above, the ok ones are counted


def _figure(figure: str, value: float | None) -> str:
    if value is None:
        return ""
    return ms(value) if figure.startswith("latency") else f"{value:.3g}"


def _comparison_cells(c: Comparison, run: str = "") -> list[str]:
    css = "bad" if c.regressed else ("good" if c.judged else "warn")
    cells = [] if not run else [escape(run)]
    return [
        *cells,
        escape(c.model_name) + (f" ({escape(c.learner)})" if c.learner else ""),
        escape(c.hardware_type),
        escape(c.role),
        escape(c.candidate),
        escape(c.figure),
        escape(_figure(c.figure, c.value)),
        escape(_figure(c.figure, c.median)) + f" (n={c.history})",
        "" if c.change is None else f"{c.change:+.0%}",
        f'<span class="{css}">{escape(c.verdict)}</span>',
        escape(c.note),
    ]


_VERDICT_HEADERS = ["model", "hardware", "role", "candidate", "figure", "now", "median"]


def judged_text(comparisons: Sequence[Comparison], min_history: int) -> str:
    """``N of M figures judged (needs 3 nights)``."""
    judged = sum(1 for c in comparisons if c.judged)
    return f"{judged} of {len(comparisons)} figures judged (needs {min_history} nights)"


def regressions_section(
    verdicts: Mapping[str, list[Comparison]], settings: RegressionSettings
) -> str:
    """Judged count of the latest night, regressions of every night, the latest night."""
    if not verdicts:
        return (
            "<p>No nightly re-benchmark (<code>rebench</code>) recorded yet: "
            f"0 figures judged (needs {settings.min_history} nights).</p>"
        )
    latest = list(verdicts)[-1]
    everything = [c for found in verdicts.values() for c in found]
    flagged = [(run, c) for run, found in verdicts.items() for c in found if c.regressed]
    judged = sum(1 for c in everything if c.judged)
    summary = (
        f'<p id="judged">Latest night ({escape(latest)}): '
        f"{judged_text(verdicts[latest], settings.min_history)}.</p>"
    )
    if flagged:
        summary += (
            f'<p class="bad">{len(flagged)} regressed figures in {len(verdicts)} nightly runs.</p>'
        )
        found_rows = [_comparison_cells(c, run) for run, c in reversed(flagged)]
        headers = ["run", *_VERDICT_HEADERS, "change", "verdict", "note"]
        summary += table(headers, found_rows, "regressions")
    elif judged:
        summary += (
            f"<p>No regression among the {judged} judged figures of {len(verdicts)} runs.</p>"
        )
    else:
        summary += (
            '<p class="warn">Nothing judged yet: every figure needs '
            f"{settings.min_history} earlier nights; no verdict either way.</p>"
        )
    shown = verdicts[latest]
    hidden = ""
    if len(shown) > _MAX_LATEST:  # a big fleet: what needs reading only
        worth = [c for c in shown if c.verdict != "ok" or c.note]
        hidden = (
            f'<p class="muted">{len(shown) - len(worth)} figures ok, without notes: not shown.</p>'
        )
        shown = worth
    headers = [*_VERDICT_HEADERS, "change", "verdict", "note"]
    every = table(headers, [_comparison_cells(c) for c in shown], "latest-night")
    return summary + "<h3>Every figure of the latest night</h3>" + every + hidden


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
