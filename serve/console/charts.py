"""Server-rendered SVG charts: the geometry only (templates draw it), so a chart is
a few hundred bytes of path data, needs no script and passes a strict CSP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    path: str  # one <path>: a bar per non-empty value
    peak: float  # the value of a full-height bar
    count: int  # how many values the chart spans


def bar_chart(values: Sequence[Optional[float]], height: int = 60, bar: int = 1) -> BarChart:
    """Bars ``bar`` units wide, scaled so the largest value fills ``height`` (None: no bar)."""
    peak = max((v for v in values if v), default=0.0)
    parts = []
    for i, value in enumerate(values):
        if not value or peak <= 0:
            continue
        h = max(1.0, value / peak * height)
        parts.append(f"M{i * bar},{height}v-{h:.1f}h{bar}v{h:.1f}z")
    return BarChart(width=max(1, len(values) * bar), height=height, path="".join(parts), peak=peak, count=len(values))


def hot_minutes(values: Sequence[int], top: int = 5) -> list[tuple[int, int]]:
    """The ``top`` busiest (minute index, fires), busiest first; ties keep time order."""
    ranked = sorted((i for i, v in enumerate(values) if v), key=lambda i: (-values[i], i))
    return [(i, values[i]) for i in ranked[:top]]
