"""Line charts drawn on the server as SVG: no script, no library, nothing fetched by the browser."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from html import escape

WIDTH, HEIGHT = 720, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 16, 26, 34  #: room for the axis labels (and the legend, above the plot)


@dataclass(frozen=True)
class Point:
    """One reading: unix seconds, the value as an exact decimal (for placing and labelling) and its raw integer."""

    at: float
    value: Decimal
    raw: int


@dataclass
class Series:
    """A named line of points, oldest first."""

    name: str
    css: str  #: a class name from the page's style sheet
    points: list[Point] = field(default_factory=list)


@dataclass(frozen=True)
class Rule:
    """A horizontal line across the chart: a threshold."""

    name: str
    value: Decimal


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _short(value: Decimal) -> str:
    """A value for an axis label, rounded down as the page's health figures are (the exact one is in data-value)."""
    if abs(value) >= 1000:
        return f"{value.to_integral_value(ROUND_DOWN):,f}"
    text = f"{value.quantize(Decimal('0.0001'), ROUND_DOWN):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def line_chart(title: str, series: list[Series], rules: Sequence[Rule] = ()) -> str:
    """An SVG line chart of `series` with `rules` as dashed lines; one <circle> per point, its reading in data-*."""
    points = [p for s in series for p in s.points]
    if not points:
        return f'<p class="empty">{escape(title)}: no readings stored yet.</p>'
    lo_t, hi_t = min(p.at for p in points), max(p.at for p in points)
    values = [p.value for p in points] + [r.value for r in rules]
    lo_v, hi_v = min(values), max(values)
    if hi_v == lo_v:  # one flat line: give it room above and below
        lo_v, hi_v = lo_v - 1, hi_v + 1
    pad = (hi_v - lo_v) / 20
    lo_v, hi_v = lo_v - pad, hi_v + pad
    span_t = (hi_t - lo_t) or 1.0
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def x(t: float) -> str:
        return f"{_LEFT + (t - lo_t) / span_t * plot_w:.1f}"

    def y(v: Decimal) -> str:
        # Decimal to float only here: a pixel position, never a stored or shown amount.
        return f"{_TOP + float((hi_v - v) / (hi_v - lo_v)) * plot_h:.1f}"

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="{WIDTH}" height="{HEIGHT}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect class="frame" x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}"/>',
    ]
    for v in (hi_v - pad, lo_v + pad):
        out.append(f'<text class="axis" x="{_LEFT - 6}" y="{y(v)}" text-anchor="end">{escape(_short(v))}</text>')
    for t, anchor in ((lo_t, "start"), (hi_t, "end")):
        label = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        out.append(f'<text class="axis" x="{x(t)}" y="{HEIGHT - 10}" text-anchor="{anchor}">{label}</text>')
    for r in rules:
        out.append(
            f'<line class="rule rule-{escape(r.name)}" data-threshold="{escape(r.name)}" data-value="{r.value}"'
            f' x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y(r.value)}" y2="{y(r.value)}"/>'
            f'<text class="rule-label" x="{WIDTH - _RIGHT - 4}" y="{y(r.value)}" dy="-3" text-anchor="end">'
            f"{escape(r.name)} {escape(str(r.value))}</text>"
        )
    if len(series) > 1:  # a key to the colours, left to right along the top
        left = _LEFT
        for s in series:
            out.append(f'<text class="legend legend-{escape(s.css)}" x="{left}" y="{_TOP - 8}">{escape(s.name)}</text>')
            left += 10 + 8 * len(s.name)
    for s in series:
        if not s.points:
            continue
        css, name = escape(s.css), escape(s.name)
        coords = " ".join(f"{x(p.at)},{y(p.value)}" for p in s.points)
        out.append(f'<polyline class="line {css}" data-series="{name}" points="{coords}"/>')
        for p in s.points:
            out.append(
                f'<circle class="point {css}" data-series="{name}" data-at="{_iso(p.at)}" data-value="{p.value}"'
                f' data-raw="{p.raw}" cx="{x(p.at)}" cy="{y(p.value)}" r="3">'
                f"<title>{name} {escape(str(p.value))} at {_iso(p.at)}</title></circle>"
            )
    out.append("</svg>")
    return "\n".join(out)
