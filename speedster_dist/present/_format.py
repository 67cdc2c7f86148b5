"""How values read for people: tables (rich), latencies and candidate knobs.

It imports neither torch nor pyarrow (rich only when a table is drawn). Tables are drawn by
``rich``: styled (colours, rounded boxes, wrapped cells) on a terminal, plain otherwise (ASCII
or Markdown boxes, one row per line, no colour), so that logs, pipes and captured output stay
readable and parseable.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

__all__ = ["is_terminal", "knob_text", "ms", "render_table", "shown_knobs", "terminal_table"]

# Knobs whose value counts held-in samples, 0 meaning all of them.
_SAMPLE_KNOBS = ("calibration_samples",)
# Plain tables never wrap: a row is one line, whatever its width.
_PLAIN_WIDTH = 4000


def ms(seconds: float | None, missing: str = "", decimals: int | None = None) -> str:
    """``seconds`` in milliseconds, e.g. ``4.21 ms``: three significant digits, or
    ``decimals`` fixed ones (the summary's tables); ``missing`` when there is no figure."""
    if seconds is None:
        return missing
    value = seconds * 1e3
    return f"{value:.{decimals}f} ms" if decimals is not None else f"{value:.3g} ms"


def shown_knobs(knobs: Mapping[str, Any], calibration: int | None = None) -> dict[str, Any]:
    """``knobs`` as they acted: a sample count above what exists (or 0, "all") is shown as
    the ``calibration`` samples there were, when known."""
    shown = dict(knobs)
    if calibration is None:
        return shown
    for name in _SAMPLE_KNOBS:
        value = shown.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            shown[name] = calibration if value <= 0 or value > calibration else value
    return shown


def knob_text(knobs: Mapping[str, Any], calibration: int | None = None) -> str:
    """`` name=value`` for every knob, sorted by name (empty without knobs)."""
    shown = shown_knobs(knobs, calibration)
    return "".join(f" {k}={v}" for k, v in sorted(shown.items()))


def is_terminal(stream: TextIO) -> bool:
    """True when ``stream`` is an interactive terminal that takes colours and redraws."""
    isatty = getattr(stream, "isatty", None)
    try:
        interactive = bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
    return interactive and os.environ.get("TERM", "") != "dumb"


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    styled: bool = False,
    markdown: bool = False,
    width: int | None = None,
    styles: Mapping[str, str] | None = None,
) -> str:
    """The table as text: ``styled`` for a terminal of ``width`` columns (ANSI colours,
    wrapped cells; ``styles`` maps a cell's exact text to a rich style, e.g.
    ``{"REGRESSION": "bold red"}``), else plain: ASCII boxes (or ``markdown`` ones), no
    colour, never wrapped."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    plain_box = box.MARKDOWN if markdown else box.ASCII
    table = Table(
        box=box.ROUNDED if styled else plain_box,
        header_style="bold" if styled else "",
        show_edge=True,
        highlight=False,
    )
    for header in headers:
        table.add_column(str(header), overflow="fold", no_wrap=not styled)
    for row in rows:
        table.add_row(*(_cell(str(cell), styles if styled else None) for cell in row))
    out = io.StringIO()
    console = Console(
        file=out,
        width=width or (100 if styled else _PLAIN_WIDTH),
        force_terminal=styled,
        color_system="standard" if styled else None,
        no_color=not styled,
        highlight=False,
        emoji=False,
        markup=False,
        legacy_windows=False,
    )
    console.print(table)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    return "\n".join(lines).strip("\n")  # a Markdown box has an empty top edge


def terminal_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    stream: TextIO | None = None,
    styles: Mapping[str, str] | None = None,
) -> str:
    """The table for ``stream`` (default stdout): styled when it is a terminal, else plain."""
    styled = is_terminal(stream if stream is not None else sys.stdout)
    return render_table(headers, rows, styled=styled, styles=styles)


def _cell(text: str, styles: Mapping[str, str] | None) -> Any:
    from rich.text import Text

    return Text(text, style=(styles or {}).get(text, ""))
