"""What happens as each trial finishes: a progress display, and a row in the history when asked.

On a terminal the display is one ``rich`` bar per hardware type (trials done of planned, the
best p50 so far, the time left in the budget), with a line per finished trial above the bars.
Anywhere else (a pipe, a log, a captured stream) it is one plain line per finished trial,
nothing redrawn, so that logs stay readable and parseable. ``progress=False`` (``--quiet``)
shows nothing. Everything goes to stderr: stdout stays the summary.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from speedster_dist.display import is_terminal
from speedster_dist.options import RunOptions
from speedster_dist.records import TrialResult
from speedster_dist.summary import progress_line

__all__ = ["SearchProgress", "trial_observer"]


def _best_text(result: TrialResult | None) -> str:
    if result is None or result.latency is None:
        return "best: -"
    return f"best: {result.latency.p50 * 1e3:.3g} ms {result.candidate.label}"


class SearchProgress:
    """The progress of one search, fed by the driver's ``on_plan`` and ``on_result``."""

    def __init__(
        self,
        enabled: bool = True,
        budget_s: float = float("inf"),
        stream: TextIO | None = None,
        styled: bool | None = None,
    ) -> None:
        self.enabled = enabled
        self.budget_s = budget_s
        self.stream = stream if stream is not None else sys.stderr
        self.styled = enabled and (is_terminal(self.stream) if styled is None else styled)
        self.started = time.monotonic()
        self.done = 0
        self.per_type: dict[str, int] = {}  # trials finished, per hardware type
        self.planned: dict[str, int] = {}
        self.best: dict[str, TrialResult] = {}
        self._bars: Any = None  # a rich Progress, on a terminal only
        self._tasks: dict[str, Any] = {}

    def time_left(self) -> str:
        """What is left of the budget, e.g. ``4m 10s left`` (or ``no time limit``)."""
        if self.budget_s == float("inf"):
            return "no time limit"
        left = max(0.0, self.budget_s - (time.monotonic() - self.started))
        minutes, seconds = divmod(int(left), 60)
        return f"{minutes}m {seconds:02d}s left" if minutes else f"{seconds}s left"

    def _start_bars(self) -> Any:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
        )
        from rich.text import Text

        left = self.time_left

        class BudgetLeft(ProgressColumn):  # redrawn every refresh, not only when a trial ends
            def render(self, task: Any) -> Text:
                return Text(left(), style="dim")

        console = Console(file=self.stream, force_terminal=True, highlight=False)
        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),  # room for the text columns
            MofNCompleteColumn(),
            TextColumn("{task.fields[best]}"),
            BudgetLeft(),
            console=console,
            transient=False,
        )
        self._bars.start()
        return self._bars

    def plan(self, hardware_key: str, planned: int) -> None:
        """A hardware type's search starts: at most ``planned`` trials."""
        self.planned[hardware_key] = planned
        if not self.styled:
            return
        bars = self._bars or self._start_bars()
        self._tasks[hardware_key] = bars.add_task(
            hardware_key, total=max(planned, 1), best="best: -"
        )

    def __call__(self, result: TrialResult) -> None:
        self.done += 1
        key = result.candidate.hardware_key
        self.per_type[key] = self.per_type.get(key, 0) + 1
        best = self.best.get(key)
        best_p50 = best.latency.p50 if best is not None and best.latency else float("inf")
        if result.ok and result.latency is not None and result.latency.p50 < best_p50:
            self.best[key] = result
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        line = f"{elapsed:7.1f}s {progress_line(self.done, result)}"
        if not self.styled:
            print(line, file=self.stream, flush=True)
            return
        self._bars.console.print(line, markup=False, highlight=False)
        if key not in self._tasks:  # a result of a type never planned: a bar anyway
            self.plan(key, 1)
        self._update(key)

    def _update(self, key: str) -> None:
        done = self.per_type.get(key, 0)
        self._bars.update(
            self._tasks[key],
            completed=done,
            total=max(self.planned.get(key, 1), done),  # a retried trial can exceed the plan
            best=_best_text(self.best.get(key)),
        )

    def confirmed(self, outcome: Any) -> None:
        """The search is over (a :class:`~speedster_dist.records.SearchOutcome`): its
        confirmations are recorded where the trials are (nothing to do without a history)."""

    def close(self) -> None:
        """Stop redrawing (the bars stay on the screen, complete or not)."""
        if self._bars is not None:
            for key in self._tasks:
                self._update(key)
            self._bars.stop()
            self._bars = None


class _Observer(SearchProgress):
    """The display, plus one history row per finished trial."""

    def __init__(self, writer: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.writer = writer

    def __call__(self, result: TrialResult) -> None:
        self.writer.append(result)
        super().__call__(result)

    def confirmed(self, outcome: Any) -> None:
        """One history row per re-timed contender (the baseline and the best candidates of
        each confirmed hardware type): the confirmed figures are measurements too."""
        for confirmation in outcome.confirmed.values():
            self.writer.append_confirmation(confirmation, outcome.results)


def trial_observer(options: RunOptions, model: Any, fingerprint: str, batch: int) -> SearchProgress:
    """The progress display, plus one history row per trial when ``history=`` is given:
    every trial is written as soon as it finishes, so nothing measured is lost later.
    Pass it as the driver's ``on_result``, its ``plan`` as ``on_plan``; give it the outcome
    (``confirmed``) to record the confirmation, and ``close()`` it after."""
    shown: dict[str, Any] = {"enabled": options.progress, "budget_s": options.budget.seconds}
    if options.history is None:
        return SearchProgress(**shown)
    from speedster_dist.results import open_history

    quick = options.measure.brief
    writer = open_history(
        options.history, model, fingerprint, batch, options.history_settings(), quick
    )
    return _Observer(writer, **shown)
