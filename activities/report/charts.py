"""Inline SVG charts (no script, nothing fetched) that Chromium and WeasyPrint both draw.

A bar chart keeps every bar visible: when the smallest non-zero value would be a sliver beside
the largest (under 1/20 of it), the axis turns logarithmic and says so; every bar also carries
its value printed above it. Axis ticks fall on round values (1-2-5 steps or powers of ten).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape

from activities.report.amounts import (
    axis_unit,
    decade_label,
    linear_ticks,
    log_ticks,
    short,
    tick_label,
)
from activities.report.labels import Lang, t

# Presentation attributes, not page CSS: WeasyPrint draws inline SVG without the page's styles.
_TICK = 'font-size="12" fill="#424a53"'
_VALUE = 'font-size="11" font-weight="600" fill="#1f2328"'
_CAPTION = 'font-size="11" font-style="italic" fill="#656d76"'
_GRID = 'stroke="#d0d7de" stroke-dasharray="3 3"'
_AXIS = 'stroke="#8c959f"'
_FONT = "Noto Sans CJK SC, Noto Sans SC, Source Han Sans SC, sans-serif"

COLOURS = ("#1f6feb", "#2da44e", "#bf8700", "#cf222e", "#8250df", "#0a7d83", "#6e7781")
# Below this share of the largest value a linear bar is hard to see: the axis goes logarithmic.
LOG_BELOW = Decimal("0.05")


@dataclass(frozen=True)
class Scale:
    """Where a value lands on the axis, 0 (baseline) to 1 (top), and the axis' ticks."""

    log: bool
    ticks: list[Decimal]
    labels: list[str]
    caption: str

    def at(self, value: Decimal) -> float:
        if value <= 0:
            return 0.0
        low, high = self.ticks[0], self.ticks[-1]
        if self.log:
            span = math.log10(high) - math.log10(low)
            return max(0.0, (math.log10(value) - math.log10(low)) / span)
        return float(value / high)


def scale_for(values: Sequence[Decimal], lang: Lang) -> Scale:
    """Linear from zero unless a non-zero value would be a sliver; then log, from a decade
    below the smallest value's, so the smallest bar is at least a visible part of one decade."""
    top = max(values, default=Decimal(0))
    positive = [v for v in values if v > 0]
    if positive and min(positive) < top * LOG_BELOW:
        smallest = min(positive)
        floor = Decimal(1).scaleb(smallest.adjusted())
        if smallest < floor * 2:  # too close to its decade's floor: start one lower
            floor = floor.scaleb(-1)
        ticks = log_ticks(floor, top)
        labels = [decade_label(v, lang) for v in ticks]
        return Scale(True, ticks, labels, t("scale_log", lang))
    ticks = linear_ticks(top)
    unit, name = axis_unit(ticks[-1], lang)
    labels = [tick_label(v, unit) for v in ticks]
    return Scale(False, ticks, labels, f"{t('scale_linear', lang)}, {name}")


def bars_svg(
    name: str,
    labels: Sequence[str],
    values: Sequence[Decimal],
    lang: Lang,
    width: int = 640,
    one_colour: bool = False,
) -> str:
    """Vertical bars, one per label, the value printed above each non-zero bar."""
    height, left, bottom, top_pad = 280, 78, 40, 40
    scale = scale_for(values, lang)
    plot = height - bottom - top_pad
    base = height - bottom
    slot = (width - left - 10) / max(1, len(values))
    parts = [
        f'<svg class="chart" data-chart="{escape(name)}" data-scale='
        f'"{"log" if scale.log else "linear"}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'font-family="{_FONT}" aria-label="{escape(name)}">',
        f'<text x="{left}" y="14" {_CAPTION}>{escape(scale.caption)}</text>',
    ]
    for tick, text in zip(scale.ticks, scale.labels, strict=True):
        y = base - plot * scale.at(tick) if tick > 0 else base
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" {_GRID}/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {_TICK}>'
            f"{escape(text)}</text>"
        )
    parts.append(f'<line x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}" {_AXIS}/>')
    for i, (text, value) in enumerate(zip(labels, values, strict=True)):
        h = plot * scale.at(value)
        x = left + i * slot + slot * 0.15
        colour = COLOURS[0] if one_colour else COLOURS[i % len(COLOURS)]
        centre = x + slot * 0.35
        parts.append(
            f'<rect class="bar" data-value="{value}" x="{x:.1f}" y="{base - h:.1f}" '
            f'width="{slot * 0.7:.1f}" height="{h:.1f}" fill="{colour}">'
            f"<title>{escape(text)}: {escape(short(value, lang))}</title></rect>"
            f'<text x="{centre:.1f}" y="{base + 16}" text-anchor="middle" {_TICK}>'
            f"{escape(text)}</text>"
        )
        if value:
            parts.append(
                f'<text x="{centre:.1f}" y="{base - h - 5:.1f}" text-anchor="middle" '
                f"{_VALUE}>{escape(short(value, lang))}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def funnel_svg(stages: Sequence[tuple[str, int]], caption: str, width: int = 640) -> str:
    """Achievements entering each stage, a centred bar per stage (counts: linear)."""
    row, gap, label_w = 30, 6, 150
    top = max((n for _, n in stages), default=0) or 1
    span = width - label_w - 70
    height = len(stages) * (row + gap)
    parts = [
        f'<svg class="chart" data-chart="funnel" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'font-family="{_FONT}" aria-label="{escape(caption)}">'
    ]
    for i, (label, n) in enumerate(stages):
        w = max(2.0, span * n / top)
        x = label_w + 10 + (span - w) / 2
        y = i * (row + gap)
        parts.append(
            f'<text x="{label_w}" y="{y + row / 2 + 5}" text-anchor="end" {_TICK}>'
            f"{escape(label)}</text>"
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row}" '
            f'fill="{COLOURS[i % len(COLOURS)]}"><title>{escape(label)}: {n}</title></rect>'
            f'<text x="{width - 40}" y="{y + row / 2 + 5}" {_VALUE}>{n}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
