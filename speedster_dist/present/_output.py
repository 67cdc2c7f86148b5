"""Where what people read goes: results on stdout, progress and status on stderr (both
through here, so that a ``--json`` run can move all of it to stderr), and the command line's
logging: the package's logs and Python's warnings on stderr, at the level ``-v``/``--debug``
ask for.

Nothing here configures logging on import: a library leaves that to its application, and
``optimize_model`` only logs (see docs/cli.md, "Logs and warnings").
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from speedster_dist.cost import PriceTable
from speedster_dist.present._format import is_terminal
from speedster_dist.present._summary import format_summary, format_trials
from speedster_dist.records import SearchOutcome, TrialResult

__all__ = ["configure_logging", "print_summary", "show"]

PACKAGE_LOGGER = "speedster_dist"
_FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"


def show(text: str, *, err: bool = False) -> None:
    """``text`` for people: a result on stdout, or (``err``) progress on stderr."""
    stream = sys.stderr if err else sys.stdout
    print(text, file=stream, flush=True)


def print_summary(
    outcome: SearchOutcome,
    batch: int,
    metric: str,
    drop_ths: float | None,
    prices: PriceTable | None,
    trials: Sequence[TrialResult] = (),
    loads: Mapping[str, str] | None = None,
) -> None:
    """Speedster's summary on stdout (styled on a terminal), then ``trials`` when given;
    ``loads``: see :func:`format_summary`."""
    styled = is_terminal(sys.stdout)
    show(format_summary(outcome, batch, metric, drop_ths, prices, styled=styled, loads=loads))
    if trials:
        show(format_trials(trials, styled))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (a redirect, a test's
    capture), never to a stream that was replaced since."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """The stream is always the current stderr."""


def configure_logging(verbosity: int = 0, debug: bool = False) -> Callable[[], None]:
    """The command line's logging: the package's records at WARNING (default), INFO (``-v``)
    or DEBUG (``-vv``, ``--debug``); other libraries' at WARNING (INFO from ``-vv``); one
    line each on stderr, ``[12:00:01] INFO speedster_dist.api: ...``; Python warnings
    through the same handler. Returns the function that puts everything back as it was."""
    root, package = logging.getLogger(), logging.getLogger(PACKAGE_LOGGER)
    before = (root.level, package.level)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(_FORMAT, "%H:%M:%S"))
    root.addHandler(handler)
    level = (
        logging.DEBUG
        if debug or verbosity >= 2
        else (logging.INFO if verbosity else logging.WARNING)
    )
    package.setLevel(level)
    root.setLevel(logging.INFO if verbosity >= 2 else logging.WARNING)
    logging.captureWarnings(True)

    def undo() -> None:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(before[0])
        package.setLevel(before[1])

    return undo
