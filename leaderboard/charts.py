"""Inline SVG charts for the HTML report, drawn by hand so the report needs no plotting library and loads
nothing from anywhere: grouped bars, a scatter plot and line curves.

Every label passes through `html.escape` (run names and models are user text), and every mark carries a
`<title>` so hovering shows the exact value. Charts are plain strings to paste into the page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
WIDTH, PLOT_H = 760, 220
LEFT, RIGHT, TOP = 56, 190, 36  # room for the y ticks, the legend and the title
BOTTOM, BOTTOM_ROTATED = 50, 84  # room for the x ticks and label; more for slanted category names


def color(index: int) -> str:
    """The palette colour of series `index`, cycling when there are more series than colours."""
    return PALETTE[index % len(PALETTE)]


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _fmt(value: float) -> str:
    return f"{value:.3f}"


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `high` (steps of 1, 2 or 5 times a power of ten)."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(high / step - 1e-9) + 1)]


def _line(css: str, x1: float, x2: float, y1: float, y2: float) -> str:
    return f'<line class="{css}" x1="{x1:.1f}" x2="{x2:.1f}" y1="{y1:.1f}" y2="{y2:.1f}"/>'


def _tick(x: float, y: float, text: str, anchor: str = "middle") -> str:
    """An axis label at (x, y); `text` must already be escaped."""
    return f'<text class="tick" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{text}</text>'


class Frame:
    """A plot area with linear axes; maps data to pixels and draws the axes, grid, title and legend."""

    def __init__(
        self,
        title: str,
        x_label: str,
        y_label: str,
        y_ticks: Sequence[float],
        width: int = WIDTH,
        bottom: int = BOTTOM,
    ):
        self.title, self.x_label, self.y_label = title, x_label, y_label
        self.width = width
        self.y_ticks = list(y_ticks)
        self.plot_w = width - LEFT - RIGHT
        self.plot_h = PLOT_H
        self.height = TOP + PLOT_H + bottom

    def y(self, value: float) -> float:
        """The SVG y coordinate of `value` on this frame's axis (0 at the bottom, the top tick at the top)."""
        return TOP + self.plot_h * (1 - value / self.y_ticks[-1])

    def open(self, kind: str) -> list[str]:
        """The opening SVG of a chart: its title and y-axis ticks."""
        parts = [
            f'<svg class="chart" data-chart="{escape(kind)}" viewBox="0 0 {self.width} {self.height}" '
            f'width="{self.width}" height="{self.height}" role="img" aria-label="{escape(self.title)}">',
            f'<text class="title" x="{LEFT}" y="20">{escape(self.title)}</text>',
        ]
        for tick in self.y_ticks:
            y = self.y(tick)
            parts.append(_line("grid", LEFT, LEFT + self.plot_w, y, y))
            parts.append(_tick(LEFT - 6, y + 4, f"{tick:g}", "end"))
        bottom = TOP + self.plot_h
        parts.append(_line("axis", LEFT, LEFT + self.plot_w, bottom, bottom))
        parts.append(_line("axis", LEFT, LEFT, TOP, bottom))
        parts.append(
            f'<text class="label" x="{LEFT + self.plot_w / 2:.1f}" y="{self.height - 8}" '
            f'text-anchor="middle">{escape(self.x_label)}</text>'
        )
        parts.append(
            f'<text class="label" transform="translate(14 {TOP + self.plot_h / 2:.1f}) rotate(-90)" '
            f'text-anchor="middle">{escape(self.y_label)}</text>'
        )
        return parts

    def legend(self, names: Sequence[str], colors: Sequence[str]) -> list[str]:
        """SVG legend entries right of the plot; long names are shortened, in full on hover."""
        x = LEFT + self.plot_w + 16
        parts = ['<g class="legend">']
        for index, (name, fill) in enumerate(zip(names, colors, strict=True)):
            y = TOP + 8 + index * 18
            parts.append(f'<rect x="{x}" y="{y - 9}" width="11" height="11" fill="{fill}"/>')
            parts.append(
                f'<text x="{x + 16}" y="{y + 1}"><title>{escape(name)}</title>{escape(_short(name))}</text>'
            )
        parts.append("</g>")
        return parts


def _colors(count: int, colors: Sequence[str] | None) -> list[str]:
    """The caller's colors (so a run keeps its color across charts), else the palette in order."""
    return list(colors) if colors is not None else [color(index) for index in range(count)]


def grouped_bars(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    colors: Sequence[str] | None = None,
) -> str:
    """Success per category, one bar per run within each category group; None (a run without that
    category) leaves a gap. Values are rates in [0, 1]."""
    fills = _colors(len(series), colors)
    width = max(WIDTH, LEFT + RIGHT + len(categories) * (len(series) * 6 + 12))
    frame = Frame(title, "category", "success rate", [0, 0.25, 0.5, 0.75, 1.0], width, BOTTOM_ROTATED)
    parts = frame.open("categories")
    group = frame.plot_w / max(len(categories), 1)
    bar = group * 0.8 / max(len(series), 1)
    bottom = TOP + frame.plot_h
    for c_index, category in enumerate(categories):
        start = LEFT + c_index * group + group * 0.1
        for s_index, (name, values) in enumerate(series):
            value = values[c_index]
            if value is None:
                continue
            top, x = frame.y(value), start + s_index * bar
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{top:.1f}" width="{max(bar - 1, 1):.1f}" '
                f'height="{bottom - top:.1f}" fill="{fills[s_index]}"><title>{escape(name)} / '
                f"{escape(category)}: {_fmt(value)}</title></rect>"
            )
        label_x = LEFT + (c_index + 0.5) * group
        parts.append(
            f'<text class="tick" transform="translate({label_x:.1f} {bottom + 12}) rotate(-30)" '
            f'text-anchor="end"><title>{escape(category)}</title>{escape(_short(category, 18))}</text>'
        )
    parts += frame.legend([name for name, _ in series], fills)
    parts.append("</svg>")
    return "\n".join(parts)


def scatter(
    title: str,
    x_label: str,
    y_label: str,
    points: Sequence[tuple[str, float, float]],
    colors: Sequence[str] | None = None,
) -> str:
    """One labelled point per run: (name, x, y) with y a rate in [0, 1] and x from 0 up."""
    fills = _colors(len(points), colors)
    frame = Frame(title, x_label, y_label, [0, 0.25, 0.5, 0.75, 1.0])
    x_ticks = nice_ticks(max((x for _, x, _ in points), default=1.0) or 1.0)
    parts = frame.open("scatter")
    bottom = TOP + frame.plot_h

    def px(value: float) -> float:
        return LEFT + frame.plot_w * value / x_ticks[-1]

    for tick in x_ticks:
        parts.append(_tick(px(tick), bottom + 16, f"{tick:g}"))
    for index, (name, x, y) in enumerate(points):
        parts.append(
            f'<circle class="point" cx="{px(x):.1f}" cy="{frame.y(y):.1f}" r="6" fill="{fills[index]}">'
            f"<title>{escape(name)}: {escape(x_label)} {x:.2f}, {escape(y_label)} {_fmt(y)}</title></circle>"
        )
    parts += frame.legend([name for name, _, _ in points], fills)
    parts.append("</svg>")
    return "\n".join(parts)


def curves(
    title: str,
    x_label: str,
    y_label: str,
    series: Sequence[tuple[str, Sequence[float]]],
    colors: Sequence[str] | None = None,
) -> str:
    """One polyline per run over x = 1..len(values), with a marker at each point (a k=1 run is a dot)."""
    fills = _colors(len(series), colors)
    frame = Frame(title, x_label, y_label, [0, 0.25, 0.5, 0.75, 1.0])
    longest = max((len(values) for _, values in series), default=1)
    parts = frame.open("curves")
    bottom = TOP + frame.plot_h

    def px(k: int) -> float:
        return LEFT + frame.plot_w * (0.5 if longest == 1 else (k - 1) / (longest - 1))

    for k in range(1, longest + 1):
        parts.append(_tick(px(k), bottom + 16, str(k)))
    for index, (name, values) in enumerate(series):
        coords = [(px(k), frame.y(value)) for k, value in enumerate(values, 1)]
        if len(coords) > 1:
            points = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(
                f'<polyline class="curve" points="{points}" fill="none" stroke="{fills[index]}" '
                f'stroke-width="2"><title>{escape(name)}</title></polyline>'
            )
        for k, ((x, y), value) in enumerate(zip(coords, values, strict=True), 1):
            tip = f"{escape(name)}: {escape(x_label)} {k}, {escape(y_label)} {_fmt(value)}"
            parts.append(
                f'<circle class="marker" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{fills[index]}">'
                f"<title>{tip}</title></circle>"
            )
    parts += frame.legend([name for name, _ in series], fills)
    parts.append("</svg>")
    return "\n".join(parts)
