"""Small inline-SVG charts for the report: lines over time, horizontal bars, scatter plots.

Drawn by hand so that the report is one self-contained HTML file with no script and nothing
fetched from the network. Every mark carries a ``<title>`` (the browser's native tooltip).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape

__all__ = ["PALETTE", "Bar", "Point", "Series", "hbar_chart", "line_chart", "scatter_chart"]

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
_W, _H = 700, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 200, 34, 46


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    tip: str = ""
    flagged: bool = False  # drawn as a red ring (e.g. a regression)


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
    tip: str = ""


@dataclass(frozen=True)
class _Scale:
    lo: float
    hi: float
    px_lo: float
    px_hi: float
    log: bool = False

    def __call__(self, value: float) -> float:
        lo, hi, v = self.lo, self.hi, value
        if self.log:
            lo, hi, v = math.log10(lo), math.log10(hi), math.log10(max(value, self.lo))
        return self.px_lo + (v - lo) / ((hi - lo) or 1.0) * (self.px_hi - self.px_lo)


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.2e}"


def _linear(values: Sequence[float], px_lo: float, px_hi: float) -> _Scale:
    """From zero (latencies, speed-ups) to a little above the largest value."""
    hi = max([*values, 0.0])
    return _Scale(0.0, hi * 1.05 or 1.0, px_lo, px_hi)


def _log(values: Sequence[float], px_lo: float, px_hi: float, floor: float) -> _Scale:
    positive = [max(v, floor) for v in values] or [floor, 1.0]
    lo = 10 ** math.floor(math.log10(min(positive)))
    hi = 10 ** math.ceil(math.log10(max(positive)))
    return _Scale(lo, hi if hi > lo else lo * 10, px_lo, px_hi, log=True)


# Steps of a time axis, in seconds: from a second to a month.
_TIME_STEPS = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
    2592000,
)


def _time_scale(values: Sequence[float], px_lo: float, px_hi: float) -> _Scale:
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (hi - lo) * 0.05 or 30.0  # a single moment: a minute around it
    return _Scale(lo - pad, hi + pad, px_lo, px_hi)


def _time_ticks(scale: _Scale, count: int = 5) -> list[float]:
    span = scale.hi - scale.lo
    step = next((s for s in _TIME_STEPS if span / s <= count), _TIME_STEPS[-1])
    first = math.ceil(scale.lo / step) * step
    return [first + i * step for i in range(int((scale.hi - first) // step) + 1)]


def _ticks(scale: _Scale, time_axis: bool = False) -> list[float]:
    if time_axis:
        return _time_ticks(scale)
    if scale.log:
        lo, hi = round(math.log10(scale.lo)), round(math.log10(scale.hi))
        return [10.0**e for e in range(lo, hi + 1)]
    return [t for t in _nice_ticks(scale.lo, scale.hi) if scale.lo <= t <= scale.hi]


def _time_label(seconds: float, span: float) -> str:
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    if span < 3600:
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%m-%d %H:%M" if span < 172800 else "%Y-%m-%d")


def _axes(
    x: _Scale, y: _Scale, x_label: str, y_label: str, time_axis: bool, y_ticks: bool = True
) -> str:
    parts = ['<g class="axes" font-size="11" fill="#333">']
    bottom, left = y.px_lo, x.px_lo
    for tick in _ticks(y) if y_ticks else []:
        py = y(tick)
        parts.append(
            f'<line x1="{left}" x2="{x.px_hi}" y1="{py:.1f}" y2="{py:.1f}" stroke="#e3e3e3"/>'
            f'<text x="{left - 6}" y="{py + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>'
        )
    span = x.hi - x.lo
    for tick in _ticks(x, time_axis):
        px = x(tick)
        text = _time_label(tick, span) if time_axis else _fmt(tick)
        parts.append(
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#333"/>'
            f'<text x="{px:.1f}" y="{bottom + 16}" text-anchor="middle">{escape(text)}</text>'
        )
    parts.append(
        f'<line x1="{left}" x2="{x.px_hi}" y1="{bottom}" y2="{bottom}" stroke="#333"/>'
        f'<line x1="{left}" x2="{left}" y1="{y.px_hi}" y2="{bottom}" stroke="#333"/>'
        f'<text x="{(left + x.px_hi) / 2:.0f}" y="{bottom + 34}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
        f'<text transform="translate(14,{(y.px_lo + y.px_hi) / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text></g>'
    )
    return "".join(parts)


def _legend(series: Sequence[Series], left: float) -> str:
    parts = ['<g class="legend" font-size="11">']
    for i, s in enumerate(series[:14]):
        y = _TOP + 6 + i * 16
        parts.append(
            f'<rect x="{left}" y="{y - 8}" width="10" height="10" fill="{s.color}"/>'
            f'<text x="{left + 14}" y="{y + 1}">{escape(s.label[:28])}</text>'
        )
    if len(series) > 14:
        parts.append(f'<text x="{left}" y="{_TOP + 6 + 14 * 16}">+{len(series) - 14} more</text>')
    return "".join(parts) + "</g>"


def _svg(title: str, body: str, height: int = _H, kind: str = "chart") -> str:
    return (
        f'<svg class="{kind}" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}" role="img" aria-label="{escape(title)}">'
        f'<text x="{_LEFT}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>'
        f"{body}</svg>"
    )


def _mark(x: float, y: float, point: Point, color: str) -> str:
    ring = (
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="none" stroke="#d00" stroke-width="2"/>'
        if point.flagged
        else ""
    )
    return (
        f'{ring}<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}">'
        f"<title>{escape(point.tip)}</title></circle>"
    )


def _plot_area() -> tuple[float, float, float, float]:
    return _LEFT, _W - _RIGHT, _H - _BOTTOM, _TOP


def line_chart(title: str, series: Sequence[Series], y_label: str) -> str:
    """Lines over time (``Point.x`` in epoch seconds), y from zero."""
    left, right, bottom, top = _plot_area()
    xs = [p.x for s in series for p in s.points]
    x = _time_scale(xs, left, right)
    y = _linear([p.y for s in series for p in s.points], bottom, top)
    body = [_axes(x, y, "time (UTC)", y_label, time_axis=True)]
    for s in series:
        coords = [(x(p.x), y(p.y)) for p in sorted(s.points, key=lambda p: p.x)]
        if len(coords) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in coords)
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="2"/>'
            )
        body.extend(_mark(x(p.x), y(p.y), p, s.color) for p in s.points)
    body.append(_legend(series, right + 12))
    return _svg(title, "".join(body), kind="chart line-chart")


def scatter_chart(
    title: str, series: Sequence[Series], x_label: str, y_label: str, x_floor: float = 1e-7
) -> str:
    """Points on a log x axis (values under ``x_floor`` drawn at the floor) and linear y."""
    left, right, bottom, top = _plot_area()
    x = _log([p.x for s in series for p in s.points], left, right, x_floor)
    y = _linear([p.y for s in series for p in s.points], bottom, top)
    body = [_axes(x, y, x_label, y_label, time_axis=False)]
    for s in series:
        body.extend(_mark(x(p.x), y(p.y), p, s.color) for p in s.points)
    body.append(_legend(series, right + 12))
    return _svg(title, "".join(body), kind="chart scatter-chart")


def hbar_chart(title: str, bars: Sequence[Bar], x_label: str, reference: float = 1.0) -> str:
    """Horizontal bars from zero, with a dashed line at ``reference`` (e.g. 1x speed-up)."""
    row, left = 22, 330
    height = _TOP + row * max(len(bars), 1) + _BOTTOM
    bottom = height - _BOTTOM
    x = _linear([0.0, reference, *(b.value for b in bars)], left, _W - 40)
    y = _Scale(0.0, 1.0, bottom, _TOP)
    parts = [_axes(x, y, x_label, "", time_axis=False, y_ticks=False)]
    for i, bar in enumerate(bars):
        top = _TOP + i * row + 3
        width = max(x(bar.value) - left, 1.0)
        parts.append(
            f'<text x="{left - 8}" y="{top + 13}" font-size="11" text-anchor="end">'
            f"{escape(bar.label[:52])}</text>"
            f'<rect x="{left}" y="{top}" width="{width:.1f}" height="{row - 6}" fill="{bar.color}">'
            f"<title>{escape(bar.tip)}</title></rect>"
            f'<text x="{left + width + 4:.1f}" y="{top + 13}" font-size="11">'
            f"{bar.value:.2f}x</text>"
        )
    ref = x(reference)
    parts.append(
        f'<line x1="{ref:.1f}" x2="{ref:.1f}" y1="{_TOP}" y2="{bottom}" stroke="#555" '
        'stroke-dasharray="4 3"/>'
    )
    return _svg(title, "".join(parts), height=height, kind="chart bar-chart")
