"""The chart of a curve as a PNG, for the MLflow run (``metrics/curve.png``): the same chart the PR draws in
Mermaid (app/charts.py), drawn with Pillow. Only the exporter's sink (app/adapters/tracking.py) calls it, when a
run is exported: never on the path from alert to PR. `autofix calibrate` draws its curve here too
(``draw_calibration``).

Pillow is imported inside ``draw``, so importing this module (and the tracker) stays cheap; its wheels carry
FreeType and a default font, so the slim image needs no system fonts. The output is deterministic: the same
curve gives the same bytes (an export repeated after a crash overwrites the artifact with itself).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from app import charts, redact
from app.calibration import Calibration
from app.models.metrics import Curve

WIDTH, HEIGHT = 960, 540
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 90, 40, 90, 110
BACKGROUND, TEXT, MUTED, GRID = "#ffffff", "#1f2328", "#59636e", "#d8dee4"
COLORS = ("#2563eb", "#dc2626", "#16a34a")  # observed, threshold, proposed: the PR chart's palette
MAX_VERDICT = 110

Xy = tuple[float, float]


def draw(curve: Curve) -> bytes | None:
    """The PNG of ``curve`` (WIDTH x HEIGHT), or None when it has fewer than two steps of data to draw."""
    chart = charts.chart(curve)
    if chart is None:
        return None
    from PIL import Image, ImageDraw, ImageFont  # heavy: only when a chart is really drawn

    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    pen = ImageDraw.Draw(image)
    font, small, big = (ImageFont.load_default(size=s) for s in (14, 12, 20))
    plot = _Plot(chart)

    pen.text((MARGIN_LEFT, 22), chart.title, fill=TEXT, font=big)
    verdict = _printable(curve.verdict, MAX_VERDICT)
    if verdict:
        pen.text((MARGIN_LEFT, 52), verdict, fill=MUTED, font=font)
    for tick in chart.y_ticks:
        y = plot.y(tick)
        pen.line([(plot.left, y), (plot.right, y)], fill=GRID, width=1)
        pen.text((plot.left - 8, y), charts.number(tick), fill=MUTED, font=small, anchor="rm")
    pen.text((plot.left - 8, plot.top - 14), chart.unit, fill=MUTED, font=small, anchor="rs")
    for tick in charts.time_ticks(chart):
        x = plot.x(tick)
        pen.line([(x, plot.bottom), (x, plot.bottom + 5)], fill=MUTED, width=1)
        pen.text((x, plot.bottom + 8), charts.number(tick), fill=MUTED, font=small, anchor="mt")
    pen.text(((plot.left + plot.right) / 2, plot.bottom + 30), chart.x_title, fill=MUTED, font=font, anchor="mt")
    pen.rectangle([(plot.left, plot.top), (plot.right, plot.bottom)], outline=MUTED, width=1)

    legend = [(f"observed (highest sample per {chart.step_text})", COLORS[0], False)]
    for label, value, color in ((chart.threshold_label, chart.threshold, COLORS[1]),
                                ("proposed", chart.proposed, COLORS[2])):
        if value is not None:
            y = plot.y(value)
            _dashed(pen, (plot.left, y), (plot.right, y), fill=color, width=2)
            legend.append((f"{label} ({charts.number(value)} {chart.unit})".replace(" %", "%"), color, True))
    pen.line([(plot.x(x), plot.y(v)) for x, v in zip(chart.x, chart.values, strict=True)], fill=COLORS[0], width=2,
             joint="curve")
    _legend(pen, legend, y=HEIGHT - 28, font=font)

    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _printable(text: str, limit: int) -> str:
    """The verdict under the title: redacted, one line of printable ASCII (the default font's), bounded."""
    line = " ".join("".join(c if " " <= c <= "~" else " " for c in redact.text(text)).split())
    return line if len(line) <= limit else line[:limit - 3].rstrip() + "..."


class _Plot:
    """Chart coordinates to pixels."""

    def __init__(self, chart: charts.Chart) -> None:
        self.left, self.right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
        self.top, self.bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
        self._x0, self._x1 = chart.x[0], chart.x[-1]
        self._y0, self._y1 = chart.y_min, chart.y_max

    def x(self, value: float) -> float:
        return self.left + (value - self._x0) / (self._x1 - self._x0) * (self.right - self.left)

    def y(self, value: float) -> float:
        return self.bottom - (value - self._y0) / (self._y1 - self._y0) * (self.bottom - self.top)


def _dashed(pen: Any, start: Xy, end: Xy, *, fill: str, width: int, dash: float = 9, gap: float = 6) -> None:
    """A horizontal dashed line (Pillow draws only solid ones)."""
    (x, y), (stop, _) = start, end
    while x < stop:
        pen.line([(x, y), (min(x + dash, stop), y)], fill=fill, width=width)
        x += dash + gap


def _legend(pen: Any, items: Sequence[tuple[str, str, bool]], *, y: float, font: Any) -> None:
    x = float(MARGIN_LEFT)
    for label, color, dashed in items:
        if dashed:
            _dashed(pen, (x, y), (x + 26, y), fill=color, width=2, dash=7, gap=4)
        else:
            pen.line([(x, y), (x + 26, y)], fill=color, width=2)
        pen.text((x + 32, y), label, fill=TEXT, font=font, anchor="lm")
        x += 32 + pen.textlength(label, font=font) + 24


def draw_calibration(result: Calibration, *, target: float, medium_rate: float) -> bytes:
    """`autofix calibrate`'s curve (WIDTH x HEIGHT): the fitted P(safe) against the risk score, each bucket's
    observed safe rate (a dot), the policy's rates (dashed, horizontal) and the thresholds, current (grey) and
    proposed (green), as vertical lines."""
    from PIL import Image, ImageDraw, ImageFont  # heavy: only when the curve is really drawn

    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    pen = ImageDraw.Draw(image)
    font, small, big = (ImageFont.load_default(size=s) for s in (14, 12, 20))
    left, right, top, bottom = MARGIN_LEFT, WIDTH - MARGIN_RIGHT, MARGIN_TOP, HEIGHT - MARGIN_BOTTOM

    def px(x: float, y: float) -> Xy:
        return left + x * (right - left), bottom - y * (bottom - top)

    pen.text((left, 22), "Calibration: P(safe fix) against the risk score", fill=TEXT, font=big)
    pen.text((left, 52), f"{result.samples} finished fixes; safe = merged, not reverted, not ineffective",
             fill=MUTED, font=font)
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        x, y = px(tick, tick)
        pen.line([(left, y), (right, y)], fill=GRID, width=1)
        pen.text((left - 8, y), f"{tick:.0%}", fill=MUTED, font=small, anchor="rm")
        pen.text((x, bottom + 8), f"{tick:.1f}", fill=MUTED, font=small, anchor="mt")
    pen.text(((left + right) / 2, bottom + 30), "risk score", fill=MUTED, font=font, anchor="mt")
    pen.rectangle([(left, top), (right, bottom)], outline=MUTED, width=1)
    for rate in (target, medium_rate):
        _dashed(pen, (left, px(0, rate)[1]), (right, px(0, rate)[1]), fill=COLORS[1], width=1)
    for values, color in ((result.current, MUTED), (result.proposed, COLORS[2])):
        for value in values.values():
            x = px(value, 0)[0]
            for y0 in range(top, bottom, 15):
                pen.line([(x, y0), (x, min(y0 + 9, bottom))], fill=color, width=2)
    if result.curve:
        pen.line([px(x, y) for x, y in result.curve], fill=COLORS[0], width=3)
    for b in result.buckets:
        if b.safe_rate is not None:
            x, y = px((b.low + b.high) / 2, b.safe_rate)
            r = 3 + min(8, b.count ** 0.5 / 2)
            pen.ellipse([(x - r, y - r), (x + r, y + r)], outline=TEXT, width=2)
    _legend(pen, [("fitted (isotonic)", COLORS[0], False), ("observed per bucket (o)", TEXT, False),
                  ("target rates", COLORS[1], True), ("current", MUTED, True), ("proposed", COLORS[2], True)],
            y=HEIGHT - 35, font=font)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
