"""What happens as each trial finishes: a progress line, and a row in the history when asked."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from speedster_dist.options import RunOptions
from speedster_dist.records import TrialResult
from speedster_dist.summary import progress_line

__all__ = ["progress_printer", "trial_observer"]


def progress_printer(enabled: bool) -> Callable[[TrialResult], None]:
    """One line per finished trial on stderr (stdout stays the summary)."""
    started = time.monotonic()
    count = [0]

    def show(result: TrialResult) -> None:
        count[0] += 1
        if enabled:
            elapsed = time.monotonic() - started
            print(f"{elapsed:7.1f}s {progress_line(count[0], result)}", file=sys.stderr, flush=True)

    return show


def trial_observer(
    options: RunOptions, model: Any, fingerprint: str, batch: int
) -> Callable[[TrialResult], None]:
    """Progress lines, plus one history row per trial when ``history=`` is given: every
    trial is written as soon as it finishes, so nothing measured is lost later."""
    show = progress_printer(options.progress)
    if options.history is None:
        return show
    from speedster_dist.results import open_history

    writer = open_history(options.history, model, fingerprint, batch, options.history_settings())

    def record(result: TrialResult) -> None:
        writer.append(result)
        show(result)

    return record
