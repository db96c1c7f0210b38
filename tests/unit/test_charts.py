"""The chart of a curve (app/charts.py): the grid, the peaks, the numbers and texts Mermaid and the PNG get."""

from __future__ import annotations

import itertools
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import charts
from app.models.metrics import MAX_CURVE_POINTS, Curve

ALERT_AT = 1_795_965_329.0
MERMAID_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)")  # xychart.jison's NUMBER_WITH_DECIMAL
SAFE = re.compile(r"[A-Za-z0-9 ._/()+,%-]*")


def working_set(hours: float, *, every: float = 60.0) -> list[tuple[float, float]]:
    """MiB, one sample a minute up to the alert: a slow climb with one 5-minute spike 10 hours before."""
    count = int(hours * 3600 / every)
    return [(ALERT_AT - hours * 3600 + i * every, 300 + i * 0.01 + (180 if 600 <= (count - i) * every / 60 < 605
                                                                      else 0)) for i in range(count + 1)]


def test_three_days_are_37_points_of_2_hours_ending_at_the_alert_and_keep_the_spike() -> None:
    chart = charts.chart(Curve(title="memory working set of checkout (all pods)", unit="MiB",
                               points=working_set(72), threshold=512, threshold_label="limit 512Mi", end=ALERT_AT))
    assert chart is not None
    assert (chart.x_title, chart.x_unit, chart.step, len(chart.x)) == ("hours before the alert", "h", 2.0, 37)
    assert chart.x[0] == -72 and chart.x[-1] == 0 and all(b - a == 2 for a, b in itertools.pairwise(chart.x))
    assert max(chart.values) == pytest.approx(max(v for _, v in working_set(72)))
    assert chart.values[chart.x.index(-10)] > 480, "the spike 10 h before the alert is in its own step"
    assert (chart.y_min, chart.y_max, chart.y_ticks) == (0, 600, (0, 200, 400, 600))


def test_a_short_window_is_in_minutes_and_data_ending_early_ends_the_axis_early() -> None:
    points = [(t - 1800, v) for t, v in working_set(1)]  # the last sample 30 minutes before the alert
    chart = charts.chart(Curve(title="t", unit="MiB", points=points, end=ALERT_AT))
    assert chart is not None and chart.x_unit == "min" and chart.step == 2
    assert (chart.x[0], chart.x[-1]) == (-90, -30)


def test_a_gap_is_drawn_straight_across() -> None:
    points = [(ALERT_AT - 10 * 3600, 100.0), (ALERT_AT - 9 * 3600, 100.0), (ALERT_AT - 3600, 500.0),
              (ALERT_AT, 500.0)]
    chart = charts.chart(Curve(title="t", unit="MiB", points=points, end=ALERT_AT), max_points=11)
    assert chart is not None and chart.x == tuple(float(x) for x in range(-10, 1))
    assert chart.values == (100, 100, 150, 200, 250, 300, 350, 400, 450, 500, 500)


def test_nothing_to_draw() -> None:
    assert charts.chart(Curve(title="t", unit="MiB", points=[(ALERT_AT, 1.0)])) is None
    assert charts.chart(Curve(title="t", unit="MiB", points=[(ALERT_AT, math.nan), (ALERT_AT - 60, math.inf)])) is None
    assert charts.chart(Curve(title="t", unit="MiB", points=[(ALERT_AT - 5, 1.0), (ALERT_AT, 2.0)])) is None


points = st.lists(st.tuples(st.floats(ALERT_AT - 30 * 86400, ALERT_AT), st.floats(-1e9, 1e12)), min_size=2,
                  max_size=300)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(points, st.integers(2, 120), st.none() | st.floats(ALERT_AT, ALERT_AT + 86400))
def test_any_curve_fits_its_points_on_a_regular_grid_keeping_the_peak(found: list[tuple[float, float]],
                                                                      most: int, end: float | None) -> None:
    chart = charts.chart(Curve(title="t", unit="MiB", points=found, end=end), max_points=most)
    if chart is None:
        return
    assert 2 <= len(chart.x) == len(chart.values) <= most
    assert all(math.isclose(b - a, chart.step) for a, b in itertools.pairwise(chart.x))
    assert chart.x[-1] <= 0
    assert max(chart.values) == max(v for _, v in found), "each step shows its highest sample"
    assert chart.y_min <= min(chart.values) and max(chart.values) <= chart.y_max
    assert chart.y_ticks[0] == chart.y_min and chart.y_ticks[-1] == chart.y_max and len(chart.y_ticks) <= 12


@settings(derandomize=True, max_examples=500, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15))
def test_numbers_are_compact_and_exponent_free(value: float) -> None:
    text = charts.number(value)
    assert MERMAID_NUMBER.fullmatch(text), text
    assert len(text) <= 17
    assert math.isclose(float(text), value, rel_tol=6e-4, abs_tol=6e-7), (value, text)


@settings(derandomize=True, max_examples=500, deadline=None)
@given(st.text() | st.sampled_from(['a"b', "``` x", "%%{init: {}}%%", "#quot;", "a;b", "[x]", "https://e.x/"]))
def test_chart_texts_keep_a_safe_character_set(text: str) -> None:
    shown = charts.plain(text, 40)
    assert SAFE.fullmatch(shown) and "%%" not in shown and "//" not in shown and len(shown) <= 40, shown
    assert shown == shown.strip()


@pytest.mark.parametrize(("text", "shown"), [("MiB", "MiB"), ("cores", "cores"), ("%", "%"), ("MiB/s", "MiB/s"),
                                            ("www.evil.example", "wwwevilexampl"), ("%%{x}%%", "%x%"), ("a//b", "a/b")])
def test_a_unit_is_letters_percent_and_slash(text: str, shown: str) -> None:
    assert charts.unit(text) == shown[:charts.MAX_UNIT]


def test_chart_texts_read_as_written_when_plain() -> None:
    assert charts.plain("memory working set of checkout-7d9f (all pods)", 80) == \
        "memory working set of checkout-7d9f (all pods)"
    assert charts.plain("limit 512Mi", 10) == "limit 5..."


def test_a_long_window_stays_within_the_points_a_pr_draws() -> None:
    week = [(t, v) for t, v in working_set(7 * 24, every=600)]
    chart = charts.chart(Curve(title="t", unit="MiB", points=week, end=ALERT_AT))
    assert chart is not None and chart.step == 3 and len(chart.x) == 57 <= MAX_CURVE_POINTS
