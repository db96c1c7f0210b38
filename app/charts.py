"""The chart of a Curve (app/models/metrics.py), as the PR (a Mermaid xychart, app/render.py) and the MLflow run
(a PNG, app/adapters/png.py) both draw it: pure, so the two show the same thing.

The metric is put on a regular time grid ending at the window's end (the alert's startsAt): one point per step,
the highest sample of the step ending there (a peak is never averaged away; the step is the smallest round one that keeps the chart
within ``max_points``), a step without samples drawn straight across from its neighbours, and the grid cut to the
steps that hold data. Time reads in minutes before the alert for a short window, else in hours. The threshold
(limit or request) and the proposed value are flat lines. The y range starts at 0 and ends on a round tick above
everything drawn.

Every text of a chart passes ``plain``: a title comes partly from workload and container names, and in a Mermaid
block a quote, a backtick, ``%%``, ``#``, brackets or a semicolon could end a string, the fence or the statement,
or start a directive. Only letters, digits, spaces and ``. _ / ( ) + , - %`` remain (``%%`` and ``//``
collapsed to one character).
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass

from app import redact
from app.models.metrics import MAX_CURVE_POINTS, Curve

MAX_TITLE = 80
MAX_LABEL = 40
MAX_UNIT = 12
MAX_VALUE = 1e15  # beyond any byte count or core count: a sample this large is garbage, not a peak
MINUTE_STEPS = (1, 2, 5, 10, 15, 20, 30)  # minutes, for windows up to SHORT_WINDOW
HOUR_STEPS = (0.125, 0.25, 0.5, 1, 2, 3, 4, 6, 8, 12, 24)  # hours (binary fractions: exact in floats)
SHORT_WINDOW = 3 * 3600.0

_UNSAFE = re.compile(r"[^A-Za-z0-9 ._/()+,%-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, kw_only=True)
class Chart:
    title: str
    unit: str  # the y axis: "MiB", "cores", "%"
    x_title: str  # "hours before the alert"
    x_unit: str  # "h" or "min"
    step: float  # between two points, in x_unit
    x: tuple[float, ...]  # ascending, in x_unit, 0 = the window's end
    values: tuple[float, ...]  # the metric, one per x
    threshold: float | None
    threshold_label: str  # "limit 512Mi"
    proposed: float | None
    y_min: float
    y_max: float
    y_ticks: tuple[float, ...]

    @property
    def step_text(self) -> str:
        return f"{number(self.step)} {self.x_unit}"


def chart(curve: Curve, *, max_points: int = MAX_CURVE_POINTS) -> Chart | None:
    """The chart of ``curve`` with at most ``max_points`` points (at least 2), or None with fewer than 2 steps
    of data to draw."""
    max_points = max(2, max_points)
    samples = sorted((t, v) for t, v in curve.points if _finite(t) and _finite(v) and abs(v) < MAX_VALUE)
    if len(samples) < 2:
        return None
    end = samples[-1][0] if curve.end is None or not _finite(curve.end) else max(curve.end, samples[-1][0])
    seconds, x_unit = _step(end - samples[0][0], max_points)
    peaks: dict[int, float] = {}
    for t, v in samples:
        k = math.ceil((t - end) / seconds - 1e-9)  # the step ending at k: the last one ends at the alert
        peaks[k] = max(v, peaks.get(k, v))
    first, last = min(peaks), max(peaks)
    if first == last:
        return None
    values = _filled(peaks, first, last)
    per_unit = seconds / (60.0 if x_unit == "min" else 3600.0)
    threshold, proposed = _value(curve.threshold), _value(curve.proposed)
    drawn = [*values, *(v for v in (threshold, proposed) if v is not None)]
    y_min, y_max, ticks = axis(min(0.0, *drawn), max(drawn))
    anchored = "the alert" if curve.end is not None else "the last sample"
    return Chart(
        title=plain(curve.title, MAX_TITLE) or "metric", unit=unit(curve.unit),
        x_title=f"{'minutes' if x_unit == 'min' else 'hours'} before {anchored}", x_unit=x_unit, step=per_unit,
        x=tuple(k * per_unit for k in range(first, last + 1)), values=tuple(values),
        threshold=threshold, threshold_label=plain(curve.threshold_label, MAX_LABEL) or "threshold",
        proposed=proposed, y_min=y_min, y_max=y_max, y_ticks=ticks)


def axis(low: float, high: float, *, ticks: int = 5) -> tuple[float, float, tuple[float, ...]]:
    """A y range on round ticks (1, 2, 2.5 or 5 times a power of ten) holding [low, high] with a little room above."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / ticks
    power = max(10.0 ** math.floor(math.log10(raw)), 1e-6)  # number() shows 6 decimals at most
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    bottom = math.floor(low / step) * step
    bottom -= step if bottom > low else 0.0  # a quotient that underflowed to 0
    top = math.ceil(high * 1.02 / step) * step if high > 0 else math.ceil(high / step) * step
    top = max(top + (step if top < high else 0.0), bottom + step)
    count = round((top - bottom) / step)
    ticks_at = tuple(_clean(bottom + i * step) for i in range(count + 1))
    return ticks_at[0], ticks_at[-1], ticks_at


def time_ticks(chart: Chart, *, count: int = 8) -> tuple[float, ...]:
    """Where the time axis of a drawn chart gets a label: the multiples of a round step of its unit (minutes:
    5, 10, 15, 30, 60; hours: 1, 2, 3, 6, 12, 24, 48) with at most ``count`` of them in the chart's range."""
    low, high = chart.x[0], chart.x[-1]
    steps = (1, 2, 5, 10, 15, 30, 60, 120) if chart.x_unit == "min" else (0.25, 0.5, 1, 2, 3, 6, 12, 24, 48, 96)
    step = next((s for s in steps if (high - low) / s < count), steps[-1])
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    return tuple(_clean(i * step) for i in range(first, last + 1))


def number(value: float) -> str:
    """Compact and exponent-free (Mermaid's numbers are ``[+-]?\\d+(\\.\\d+)?``): 4 significant digits, whole
    numbers from 1000 up."""
    if not _finite(value):
        return "0"
    if abs(value) >= 1000:
        text = str(round(value))
    else:
        decimals = min(6, max(0, 3 - math.floor(math.log10(abs(value))))) if value else 0
        text = f"{value:.{decimals}f}"
        text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text


def plain(text: object, limit: int) -> str:
    """A chart text: secrets redacted, one line, only letters, digits, spaces and ``. _ / ( ) + , - %``."""
    line = _UNSAFE.sub(" ", _CONTROL.sub(" ", redact.text(str(text))))
    # "%%" starts a Mermaid comment or directive; "//" a protocol-relative link where a caption shows the text
    line = " ".join(re.sub(r"/{2,}", "/", re.sub(r"%+", "%", line)).split())
    return line if len(line) <= limit else line[:limit - 3].rstrip() + "..."


def unit(text: str) -> str:
    """A unit (MiB, cores, %, replicas, MiB/s): letters, ``%`` and ``/`` only, so no unit reads as a link or
    a path, whatever a fixer put there."""
    kept = re.sub(r"/{2,}", "/", re.sub(r"%+", "%", re.sub(r"[^A-Za-z%/]", "", redact.text(text))))
    return kept[:MAX_UNIT]


def _step(span: float, max_points: int) -> tuple[float, str]:
    """The smallest round step (seconds) that keeps ``span`` within ``max_points`` points, and its unit."""
    intervals = max_points - 1
    if span <= SHORT_WINDOW:
        for minutes in MINUTE_STEPS:
            if math.ceil(span / (minutes * 60.0)) <= intervals:
                return minutes * 60.0, "min"
    for hours in HOUR_STEPS:
        if math.ceil(span / (hours * 3600.0)) <= intervals:
            return hours * 3600.0, "h"
    days = math.ceil(span / intervals / 86400.0)
    return days * 86400.0, "h"


def _filled(peaks: dict[int, float], first: int, last: int) -> list[float]:
    """One value per step from ``first`` to ``last``; a step without samples on the straight line between its
    neighbours (a line chart draws that line anyway; Mermaid has no gaps)."""
    known = sorted(peaks)
    out: list[float] = []
    for k in range(first, last + 1):
        if k in peaks:
            out.append(peaks[k])
            continue
        right = bisect.bisect_left(known, k)
        a, b = known[right - 1], known[right]
        out.append(peaks[a] + (k - a) / (b - a) * (peaks[b] - peaks[a]))
    return out


def _value(value: float | None) -> float | None:
    return value if value is not None and _finite(value) and abs(value) < MAX_VALUE else None


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _clean(value: float) -> float:
    return float(f"{value:.12g}")
