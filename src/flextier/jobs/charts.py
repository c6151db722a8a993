"""Small SVG charts for the HTML report: axes with real tick labels, legends, a deadline marker.

Why hand-written SVG and not a charting library: the report is one self-contained page that
people mail or attach to tickets, and many of the places it is opened (mail clients, ticket
viewers, locked-down browsers) run no scripts, so a JS library (Chart.js, uPlot, Plotly,
Vega) would show an empty page there and add 50 KB-3 MB of vendored code to keep current;
a Python plotting stack (matplotlib) would be a heavy dependency for three charts. Static
SVG renders everywhere, prints, and is testable as XML. This module keeps the geometry in
one place so every chart gets the same promises: tick labels on both axes, integer ticks on
count axes, nice time ticks measured from the job's start, the deadline on every time
chart, a legend whose swatches are drawn with the lines' own style, and no overlapping
labels (text widths are estimated conservatively and the layout leaves room for them).
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Iterable

__all__ = ["Chart", "LegendItem", "count_ticks", "money_ticks", "time_ticks", "log_ticks", "fmt_rel",
           "nice_bucket", "text_width"]

W, H = 680, 270
FONT = 11          # px, tick labels and legend
CHAR_W = 0.62      # em: a conservative average glyph width for system-ui/sans-serif digits and letters
HALO = 'stroke="#fff" stroke-width="3" paint-order="stroke"'  # text stays legible over bars and lines
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
              86400, 172800, 604800)


def text_width(text: str, size: float = FONT) -> float:
    """Estimated rendered width in px (errs wide, so layouts computed with it do not collide)."""
    return len(text) * size * CHAR_W


def fmt_rel(seconds: float) -> str:
    """A time offset for an axis: ``0``, ``45s``, ``5m``, ``1h``, ``1h30m``, ``2d``, ``1d06h``."""
    s = int(round(seconds))
    if s == 0:
        return "0"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m}m" + (f"{r:02d}s" if r else "")
    if s < 86400:
        h, r = divmod(s, 3600)
        return f"{h}h" + (f"{r // 60:02d}m" if r >= 60 else "")
    d, r = divmod(s, 86400)
    return f"{d}d" + (f"{r // 3600:02d}h" if r >= 3600 else "")


def _nice(raw: float, *, integer: bool = False) -> float:
    """The smallest 1-2-5 step >= raw (at least 1 when ``integer``)."""
    if raw <= 0:
        return 1.0
    exp = math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        step = m * 10 ** exp
        if step >= raw - 1e-12:
            break
    return max(1.0, float(math.ceil(step))) if integer else step


def count_ticks(vmax: float, n: int = 5) -> list[float]:
    """Integer ticks from 0 covering ``vmax`` (items are whole): 0, 1, 2 or 0, 50, 100..."""
    step = _nice(max(vmax, 1) / (n - 1), integer=True)
    top = max(step, math.ceil(max(vmax, 1) / step) * step)
    return [k * step for k in range(int(round(top / step)) + 1)]


def money_ticks(vmax: float, n: int = 5) -> list[float]:
    step = _nice(max(vmax, 1e-9) / (n - 1))
    top = max(step, math.ceil(vmax / step - 1e-9) * step)
    return [k * step for k in range(int(round(top / step)) + 1)]


def time_ticks(span: float, most: int = 7) -> list[float]:
    """Offsets from 0 at a round step (1 s ... 1 week) with at most ``most`` intervals."""
    span = max(span, 1.0)
    step = next((s for s in TIME_STEPS if span / s <= most), TIME_STEPS[-1] * math.ceil(span / most / TIME_STEPS[-1]))
    return [k * step for k in range(int(span // step) + 1)]


def nice_bucket(span: float, most: int = 40) -> float:
    """A round bucket width (1 s ... 1 week) giving at most ``most`` buckets over ``span``."""
    span = max(span, 1.0)
    return float(next((s for s in TIME_STEPS if span / s <= most), TIME_STEPS[-1]))


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 values between lo and hi (both > 0), thinned to at most 8."""
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= v <= hi:
                out.append(v)
    while len(out) > 8:
        out = out[::2]
    return out


def fmt_num(v: float) -> str:
    return f"{v:g}" if v < 1000 else f"{v:,.0f}"


@dataclass
class LegendItem:
    """A legend entry drawn like its series: a filled square for bars, a stroke for lines."""

    label: str
    color: str
    kind: str = "rect"       # "rect" or "line"
    dash: str | None = None  # stroke-dasharray of the line, copied from the series


class Chart:
    """One SVG chart: a plot area with axes, ticks, optional legend and deadline marker.

    The left margin is sized to the widest y tick label, the top band holds the legend
    (wrapping to more rows when needed), and the bottom band the x ticks and axis title.
    """

    def __init__(self, name: str, *, x0: float, x1: float, y_ticks: list[float], y_fmt, xlabel: str,
                 ylabel: str, legend: Iterable[LegendItem] = (), log_x: bool = False) -> None:
        self.name = name
        self.log_x = log_x
        self.x0, self.x1 = x0, (x1 if x1 > x0 else x0 + 1.0)
        self.y_ticks = y_ticks or [0.0, 1.0]
        self.y_fmt = y_fmt
        self.ymax = max(self.y_ticks[-1], 1e-12)
        self.xlabel, self.ylabel = xlabel, ylabel
        self.legend = list(legend)
        labels = [y_fmt(v) for v in self.y_ticks]
        self.left = 24 + 6 + max(text_width(t) for t in labels) + 8   # axis title, gap, labels, gap
        self.right = 16
        self._legend_rows = self._layout_legend()
        self.top = 12 + 18 * len(self._legend_rows) + (6 if self._legend_rows else 0)
        self.bottom = 46
        self.parts: list[str] = []

    # -- geometry ----------------------------------------------------------------------
    @property
    def plot_w(self) -> float:
        return W - self.left - self.right

    @property
    def plot_h(self) -> float:
        return H - self.top - self.bottom

    def sx(self, x: float) -> float:
        if self.log_x:
            lo, hi = math.log10(self.x0), math.log10(self.x1)
            return self.left + self.plot_w * (math.log10(max(x, self.x0)) - lo) / max(hi - lo, 1e-12)
        return self.left + self.plot_w * (x - self.x0) / (self.x1 - self.x0)

    def sy(self, y: float) -> float:
        return self.top + self.plot_h * (1 - y / self.ymax)

    # -- pieces ------------------------------------------------------------------------
    def _layout_legend(self) -> list[list[tuple[float, LegendItem]]]:
        rows: list[list[tuple[float, LegendItem]]] = []
        x = self.left
        for it in self.legend:
            w = 22 + text_width(it.label) + 18
            if not rows or x + w > W - self.right:
                rows.append([])
                x = self.left
            rows[-1].append((x, it))
            x += w
        return rows

    def add(self, svg: str) -> None:
        self.parts.append(svg)

    def _axes(self, x_ticks: list[tuple[float, str]]) -> str:
        L, T, B, R = self.left, self.top, H - self.bottom, W - self.right
        out = [f'<g class="axes" font-size="{FONT}" fill="#333">']
        for v in self.y_ticks:
            y = self.sy(v)
            out.append(f'<line x1="{L}" y1="{y:.1f}" x2="{R}" y2="{y:.1f}" stroke="#e6e6e6"/>')
            out.append(f'<text class="tick y" x="{L - 6:.1f}" y="{y + 4:.1f}" text-anchor="end">'
                       f'{html.escape(self.y_fmt(v))}</text>')
        for v, label in x_ticks:
            x = self.sx(v)
            out.append(f'<line x1="{x:.1f}" y1="{B}" x2="{x:.1f}" y2="{B + 4}" stroke="#333"/>')
            out.append(f'<text class="tick x" x="{x:.1f}" y="{B + 16}" text-anchor="middle">'
                       f'{html.escape(label)}</text>')
        out.append(f'<line x1="{L}" y1="{B}" x2="{R}" y2="{B}" stroke="#333"/>')
        out.append(f'<line x1="{L}" y1="{T}" x2="{L}" y2="{B}" stroke="#333"/>')
        out.append(f'<text class="title x" x="{L + self.plot_w / 2:.1f}" y="{H - 8}" text-anchor="middle">'
                   f'{html.escape(self.xlabel)}</text>')
        cy = T + self.plot_h / 2
        out.append(f'<text class="title y" x="14" y="{cy:.1f}" transform="rotate(-90 14 {cy:.1f})" '
                   f'text-anchor="middle">{html.escape(self.ylabel)}</text>')
        out.append("</g>")
        return "".join(out)

    def _legend_svg(self) -> str:
        out = [f'<g class="legend" font-size="{FONT}">']
        for r, row in enumerate(self._legend_rows):
            y = 12 + 18 * r + 9
            for x, it in row:
                if it.kind == "line":
                    dash = f' stroke-dasharray="{it.dash}"' if it.dash else ""
                    out.append(f'<line class="swatch" x1="{x:.1f}" y1="{y:.1f}" x2="{x + 18:.1f}" y2="{y:.1f}" '
                               f'stroke="{it.color}" stroke-width="2"{dash}/>')
                else:
                    out.append(f'<rect class="swatch" x="{x + 4:.1f}" y="{y - 5:.1f}" width="10" height="10" '
                               f'fill="{it.color}"/>')
                out.append(f'<text x="{x + 22:.1f}" y="{y + 4:.1f}">{html.escape(it.label)}</text>')
        out.append("</g>")
        return "".join(out)

    def deadline(self, x: float | None, label: str) -> None:
        """The deadline: a dashed red line at ``x``, or, when it lies past the axis, a marker at the
        right edge saying how far past. Either way it is on the chart."""
        if x is None:
            return
        T, B = self.top, H - self.bottom
        if x <= self.x1 + 1e-9:
            px = self.sx(x)
            anchor, tx = ("end", px - 4) if px > self.left + self.plot_w * 0.6 else ("start", px + 4)
            self.add(f'<g class="deadline" data-role="deadline"><line x1="{px:.1f}" y1="{T}" x2="{px:.1f}" y2="{B}" '
                     f'stroke="#c0392b" stroke-width="1.5" stroke-dasharray="6,4"/>'
                     f'<text x="{tx:.1f}" y="{T + 12}" text-anchor="{anchor}" font-size="{FONT}" fill="#c0392b" {HALO}>'
                     f'{html.escape(label)}</text></g>')
        else:
            px = self.left + self.plot_w
            self.add(f'<g class="deadline" data-role="deadline"><line x1="{px:.1f}" y1="{T}" x2="{px:.1f}" y2="{B}" '
                     f'stroke="#c0392b" stroke-width="1.5" stroke-dasharray="2,3"/>'
                     f'<text x="{px - 4:.1f}" y="{T + 12}" text-anchor="end" font-size="{FONT}" fill="#c0392b" {HALO}>'
                     f'{html.escape(label)} \u2192</text></g>')

    def render(self, x_ticks: list[tuple[float, str]], title: str) -> str:
        body = self._axes(x_ticks) + "".join(self.parts) + self._legend_svg()
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
                f'role="img" aria-label="{html.escape(title)}" data-chart="{html.escape(self.name)}" '
                f'font-family="system-ui, sans-serif">{body}</svg>')
