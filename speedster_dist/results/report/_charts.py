"""The report's charts, drawn by matplotlib as static SVG with real text.

Text stays text (``svg.fonttype = "none"``) and plain (no mathtext, no TeX): the browser
draws it, a reader can select it, a test can read it. Labels are wrapped, never cut, and the
saved figure is cropped to what was drawn (legends below the axes included). No script and
nothing fetched: each chart is an inline ``<svg>`` element of the page. matplotlib is
imported when a chart is drawn.
"""

from __future__ import annotations

import html
import io
import math
import re
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

__all__ = [
    "PALETTE",
    "REGRESSION_RED",
    "TEXT_AS_GIVEN",
    "Bar",
    "Point",
    "Series",
    "bar_chart",
    "drop_chart",
    "line_chart",
    "wrap",
]

# Colour-blind friendly (Okabe-Ito, then Tableau's muted tones).
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#8C564B",
    "#F0E442",
    "#7F7F7F",
    "#17BECF",
)
REGRESSION_RED = "#dd0000"
_WIDTH_IN = 7.2
# What every chart of the report needs, whatever it looks like.
TEXT_AS_GIVEN = {
    "svg.hashsalt": "speedster-dist",  # stable element ids: the same history, the same page
    # Names in charts (models, backends, techniques) are the user's text: "$\\frac{1}{$" is a
    # name to show, not mathtext to typeset (which fails on it), nor LaTeX to run.
    "text.parse_math": False,
    "text.usetex": False,
}
_RC = {
    **TEXT_AS_GIVEN,
    "svg.fonttype": "none",  # text as <text>, drawn (and readable) by the browser
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@dataclass(frozen=True)
class Point:
    x: Any  # a datetime (line charts) or a number
    y: float
    flagged: bool = False  # ringed in red: a regression
    quick: bool = False  # hollow: timed with --quick-measure


@dataclass(frozen=True)
class Series:
    label: str
    color: str
    points: tuple[Point, ...] = field(default=())


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    color: str
    text: str = ""  # written at the end of the bar


def wrap(text: str, width: int = 48) -> str:
    """``text`` on lines of at most ``width`` characters; long words are broken, never cut."""
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=True)) or text


@contextmanager
def _figure(height_in: float) -> Iterator[Any]:
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            "the report draws its charts with matplotlib: pip install 'speedster-dist[report]'"
        ) from exc

    with matplotlib.rc_context(_RC):  # type: ignore[arg-type]  # keys typed as Literal
        from matplotlib.figure import Figure

        # No layout engine: the saved figure is cropped to what was drawn (bbox "tight"), so
        # labels and legends never need the axes to shrink (and drawing is twice as fast).
        yield Figure(figsize=(_WIDTH_IN, height_in))


def _svg(fig: Any, kind: str, title: str) -> str:
    out = io.StringIO()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    # Texts past the axes (a bar's label at its end) count too, or the crop cuts them.
    texts = [text for ax in fig.axes for text in ax.texts]
    fig.savefig(
        out,
        format="svg",
        bbox_inches="tight",
        bbox_extra_artists=[*legends, *texts],  # outside the layout, inside the saved figure
        pad_inches=0.08,
        metadata={"Date": None},
    )
    text = out.getvalue()
    text = text[text.index("<svg") :]  # no XML prolog, no DOCTYPE (it names a URL)
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    label = html.escape(title.replace("\n", " "), quote=True)  # a name's "<&" stay text
    return text.replace("<svg ", f'<svg class="chart {kind}" role="img" aria-label="{label}" ', 1)


def _legend(ax: Any, columns: int = 1) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        legend = ax.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(0.0, -0.16),
            ncols=columns,
            frameon=False,
            fontsize=8,
        )
        # Below the axes, outside the layout: however many entries, the plot keeps its size
        # and the saved (tight) figure grows to show every one.
        legend.set_in_layout(False)


def line_chart(title: str, series: Sequence[Series], y_label: str) -> str:
    """p50 over time, one line per series; regressed points ringed, quick ones hollow."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    with _figure(3.0) as fig:
        ax = fig.add_subplot()
        flagged, quick = [], False
        for s in series:
            xs, ys = [p.x for p in s.points], [p.y for p in s.points]
            ax.plot(xs, ys, color=s.color, linewidth=1.4, label=wrap(s.label, 90))
            full = [p for p in s.points if not p.quick]
            hollow = [p for p in s.points if p.quick]
            quick = quick or bool(hollow)
            ax.scatter([p.x for p in full], [p.y for p in full], color=s.color, s=18, zorder=3)
            ax.scatter(
                [p.x for p in hollow],
                [p.y for p in hollow],
                facecolors="white",
                edgecolors=s.color,
                s=22,
                zorder=3,
            )
            flagged += [p for p in s.points if p.flagged]
        if flagged:
            ax.scatter(
                [p.x for p in flagged],
                [p.y for p in flagged],
                s=190,
                facecolors="none",
                edgecolors=REGRESSION_RED,
                linewidths=2.6,
                zorder=4,
                label="regression (ringed)",
            )
        if quick:
            ax.scatter([], [], facecolors="white", edgecolors="#555", s=22, label="hollow: quick")
        locator = AutoDateLocator(minticks=3, maxticks=7)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        times = [p.x for s in series for p in s.points]
        if times and min(times) == max(times):  # one moment: a day around it, not 4 years
            ax.set_xlim(times[0] - timedelta(hours=12), times[0] + timedelta(hours=12))
        ax.set_ylim(bottom=0)
        ax.set_ylabel(y_label)
        ax.set_title(wrap(title, 80), loc="left")
        ax.grid(axis="y", color="#e4e4e4")
        _legend(ax)
        return _svg(fig, "line-chart", title)


def bar_chart(title: str, bars: Sequence[Bar], x_label: str) -> str:
    """Horizontal bars, labels wrapped on the left, each bar's text at its end."""
    labels = [wrap(b.label, 34) for b in bars]
    lines = sum(label.count("\n") + 1 for label in labels)
    with _figure(0.8 + 0.22 * lines + 0.25 * len(bars)) as fig:
        ax = fig.add_subplot()
        positions = list(range(len(bars)))[::-1]
        ax.barh(positions, [b.value for b in bars], color=[b.color for b in bars], height=0.7)
        ax.set_yticks(positions, labels)
        top = max([b.value for b in bars] + [1.0])  # the 1x line is always in view
        for y, b in zip(positions, bars, strict=True):
            ax.text(b.value + top * 0.01, y, wrap(b.text, 48), va="center", fontsize=9)
        ax.axvline(1.0, color="#555", linewidth=0.8, linestyle=":")
        ax.set_xlim(0, top * 1.15)
        ax.set_xlabel(x_label)
        ax.set_title(wrap(title, 80), loc="left")
        return _svg(fig, "bar-chart", title)


def _drop_tick(value: float, _: Any) -> str:
    return "0" if value == 0 else f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")


def _linthresh(values: Sequence[float]) -> float:
    positive = [v for v in values if v > 0]
    if not positive:
        return 1e-6
    return float(10 ** math.floor(math.log10(min(positive))))


def drop_chart(
    title: str,
    series: Sequence[Series],
    rejected: Sequence[float],
    threshold: float | None,
    y_label: str,
) -> str:
    """p50 against metric drop on a symmetric-log axis that starts at 0 and reaches every
    point; ``rejected`` drops (never timed) are crosses in a band at the top; the accepted
    ``threshold`` is a dashed line."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    drops = [p.x for s in series for p in s.points] + list(rejected)
    if threshold is not None:
        drops.append(threshold)
    with _figure(3.0) as fig:
        ax = fig.add_subplot()
        for s in series:
            ax.scatter(
                [p.x for p in s.points],
                [p.y for p in s.points],
                color=s.color,
                s=24,
                label=wrap(s.label, 90),
                zorder=3,
            )
        if rejected:
            band = ax.get_xaxis_transform()
            ax.scatter(
                list(rejected),
                [0.93] * len(rejected),
                transform=band,
                marker="x",
                color="#b00000",
                s=30,
                clip_on=False,
                label=f"rejected, never timed ({len(rejected)}; drawn at the top)",
            )
        if threshold is not None:
            ax.axvline(
                threshold,
                color="#b00000",
                linestyle="--",
                linewidth=1.2,
                label=f"accepted metric drop: {threshold:g}",
            )
        ax.set_xscale("symlog", linthresh=_linthresh(drops))
        # Plain "1e-07" tick labels: no TeX-like typesetting (slow, and text a reader can copy).
        ax.xaxis.set_major_formatter(FuncFormatter(_drop_tick))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(0, max(drops, default=1.0) * 3 or 1.0)
        ax.set_ylim(bottom=0, top=max([p.y for s in series for p in s.points], default=1) * 1.2)
        ax.set_xlabel("metric drop (symmetric log: 0 on the left)")
        ax.set_ylabel(y_label)
        ax.set_title(wrap(title, 80), loc="left")
        ax.grid(color="#ececec")
        _legend(ax)
        return _svg(fig, "scatter-chart", title)
