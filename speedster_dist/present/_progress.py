"""Progress for people: the search's display as each trial finishes, and the fleet's status
lines.

On a terminal the display is one ``rich`` bar per hardware type (trials done of planned, the
best p50 so far, the time left in the budget), with a line per finished trial above the bars.
Anywhere else (a pipe, a log, a captured stream) it is one plain line per finished trial,
nothing redrawn, so that logs stay readable and parseable. ``progress=False`` (``--quiet``)
shows nothing. Everything goes to stderr: stdout stays the summary (or a command's result).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from speedster_dist.present._format import is_terminal, ms
from speedster_dist.present._summary import progress_line
from speedster_dist.records import SearchOutcome, TrialResult

__all__ = ["SearchProgress", "say"]


def say(message: str) -> None:
    """A timestamped progress or status line of the fleet workflows (stderr)."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def _best_text(result: TrialResult | None) -> str:
    if result is None or result.latency is None:
        return "best: -"
    return f"best: {ms(result.latency.p50)} {result.candidate.label}"


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

    def confirmed(self, outcome: SearchOutcome) -> None:
        """The search is over: a subclass that records the trials records its confirmations
        too (the display has nothing to add)."""

    def close(self) -> None:
        """Stop redrawing (the bars stay on the screen, complete or not)."""
        if self._bars is not None:
            for key in self._tasks:
                self._update(key)
            self._bars.stop()
            self._bars = None
