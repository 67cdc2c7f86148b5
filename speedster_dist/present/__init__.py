"""What users see in a terminal: tables, the progress of a search, the summary, the sweep's
live board and the fleet's status lines. The HTML report is :mod:`speedster_dist.results.report`.

It reads records (:mod:`speedster_dist.records`, :mod:`speedster_dist.cost`) and imports
nothing of the runtime, the search or the history: anything above it may show its results
through it. Tables are drawn by ``rich``: styled on a terminal, plain ASCII anywhere else.
"""

from speedster_dist.present._board import SweepBoard
from speedster_dist.present._format import (
    is_terminal,
    knob_text,
    ms,
    render_table,
    shown_knobs,
    terminal_table,
)
from speedster_dist.present._output import configure_logging, print_summary, show
from speedster_dist.present._progress import SearchProgress, say
from speedster_dist.present._summary import (
    format_costs,
    format_fleet,
    format_summary,
    format_trials,
    metric_line,
    progress_line,
)

__all__ = [
    "SearchProgress",
    "SweepBoard",
    "configure_logging",
    "format_costs",
    "format_fleet",
    "format_summary",
    "format_trials",
    "is_terminal",
    "knob_text",
    "metric_line",
    "ms",
    "print_summary",
    "progress_line",
    "render_table",
    "say",
    "show",
    "shown_knobs",
    "terminal_table",
]
