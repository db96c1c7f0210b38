"""app/curves.py: statistics, runs between restarts, downsampling and the verdicts, on series shaped like the ones
Prometheus returns for a kube-prometheus-stack install (tests/unit/shapes.py)."""

from __future__ import annotations

import pytest

from app import curves
from app.models import metrics as m
from app.models.metrics import MAX_CURVE_POINTS, Metrics
from app.policies import MemoryCurve, MemoryLeak, MemoryRegression, Policy
from tests.unit import shapes as s
from tests.unit.shapes import DAY, HOUR, MINUTE, MiB

POLICY = Policy()
LIMIT = 512 * MiB
OLD, NEW = "ghcr.io/acme/checkout:1.4.1", "ghcr.io/acme/checkout:1.4.2"
PODS = ("checkout-7d9f8b6c5-abcde", "checkout-7d9f8b6c5-fghij", "checkout-7d9f8b6c5-x2v7q")
EARLIER = ("checkout-5b6c8d9f47-kq7zt", "checkout-5b6c8d9f47-m2xw9", "checkout-5b6c8d9f47-tg4rn")


def read(metrics: Metrics, *, rule: MemoryCurve = POLICY.memory.curve,
         leak: MemoryLeak = POLICY.memory.leak) -> curves.MemoryReading:
    reading = curves.read_memory(metrics, "checkout", limit=LIMIT, rule=rule, leak=leak)
    assert reading is not None
    return reading


def kills_every(period: float, *, start: float, until: float = -MINUTE) -> list[float]:
    found, k = [], start + period
    while k < until:
        found.append(k)
        k += period
    return found


def leaking(pods: tuple[str, ...] = PODS, *, image: str = NEW, per_hour: float = 40 * MiB,
            start: float = -3 * DAY - HOUR) -> list[list[m.Series]]:
    """Each pod's working set grows from 200Mi by ``per_hour`` until the kernel kills it at the limit."""
    period = (LIMIT - 200 * MiB) / per_hour * HOUR
    return [s.container(pod, "checkout", image=image, memory=s.ramp(200 * MiB, per_hour), start=start + i * 1800,
                        kills=kills_every(period, start=start + i * 1800), limits={"memory": LIMIT})
            for i, pod in enumerate(pods)]


def released(*, climb_minutes: float = 5, before: float = 210 * MiB) -> list[list[m.Series]]:
    """Revision 5b6c8d9f47 (1.4.1) flat at ``before`` until 45 min before the alert; 7d9f8b6c5 (1.4.2) from then on,
    climbing to the limit ``climb_minutes`` after each start, killed, in back-off, started again."""
    rollout = -45 * MINUTE
    old = [s.container(pod, "checkout", image=OLD, memory=s.flat(before, 6 * MiB), start=-3 * DAY - HOUR,
                       end=rollout, limits={"memory": LIMIT}) for pod in EARLIER]
    climb = (LIMIT - 180 * MiB) / (climb_minutes * MINUTE) * HOUR
    new = [s.container(pod, "checkout", image=NEW, memory=s.ramp(180 * MiB, climb), start=rollout + i * 60,
                       kills=kills_every(climb_minutes * MINUTE + 10 * MINUTE, start=rollout + i * 60),
                       limits={"memory": LIMIT},
                       backoff=5 * MINUTE) for i, pod in enumerate(PODS)]
    return [*old, *new]


def spiky(*, base: float = 440 * MiB, peak: float = 505 * MiB) -> list[list[m.Series]]:
    """A plateau near the limit with short peaks; the last peaks reach the limit and kill."""
    return [s.container(pod, "checkout", image=NEW, memory=s.plateau(base + i * 4 * MiB, peak=peak, every=4 * HOUR),
                        start=-3 * DAY - HOUR, kills=[-40 * MINUTE + i * 120], limits={"memory": LIMIT})
            for i, pod in enumerate(PODS)]


# ---------------------------------------------------------------- statistics


@pytest.mark.parametrize(("q", "expected"), [(0, 1.0), (50, 3.0), (95, 4.8), (100, 5.0), (25, 2.0)])
def test_percentile_interpolates_between_ranks(q: float, expected: float) -> None:
    assert curves.percentile([5.0, 1.0, 3.0, 2.0, 4.0], q) == pytest.approx(expected)


def test_least_squares_growth_per_hour_and_fit() -> None:
    points = [(1000.0 + i * 300, 100.0 + 2.0 * i * 300 / 3600) for i in range(24)]
    slope, r2 = curves.fit(points)
    assert slope * 3600 == pytest.approx(2.0)
    assert r2 == pytest.approx(1.0)
    assert curves.fit([(0.0, 5.0), (300.0, 5.0), (600.0, 5.0)]) == (0.0, 0.0)  # flat: no line to fit


# ---------------------------------------------------------------- runs between restarts


def test_runs_are_cut_where_the_working_set_drops() -> None:
    """Each point is its step's largest scrape, so the step after a kill still shows the kill's peak and the drop
    comes one step after kube-state-metrics' counter went up: one cut per restart, never a one-point run."""
    memory, counter = (x for x in s.container(PODS[0], "checkout", image=NEW, memory=s.ramp(200 * MiB, 40 * MiB),
                                              start=-20 * HOUR, kills=[-13 * HOUR - 100, -6 * HOUR - 100],
                                              limits={"memory": LIMIT}) if x.name in (m.MEMORY, m.RESTARTS))
    assert curves.runs(memory, counter) == curves.runs(memory)
    found = curves.runs(memory)
    assert len(found) == 3 and min(len(r.points) for r in found) > 12
    assert [r.restarted_before for r in found] == [False, True, True]
    assert [r.restarted_after for r in found] == [True, True, False]
    assert all(r.per_hour == pytest.approx(40 * MiB, rel=0.02) for r in found)


def test_a_restart_seen_only_by_the_counter_still_cuts() -> None:
    """Killed at a low working set (no drop to see): kube-state-metrics' restart counter says where."""
    memory, counter = (x for x in s.container(PODS[0], "checkout", image=NEW, memory=s.flat(150 * MiB),
                                              start=-6 * HOUR, kills=[-3 * HOUR]) if x.name in (m.MEMORY, m.RESTARTS))
    assert len(curves.runs(memory)) == 1
    found = curves.runs(memory, counter)
    assert len(found) == 2 and found[0].restarted_after and found[1].restarted_before
    assert found[1].start == pytest.approx(s.ALERT_AT - 3 * HOUR, abs=s.STEP)


def test_a_gap_in_the_samples_is_a_restart_and_a_wobble_is_not() -> None:
    [memory, *_] = s.container(PODS[0], "checkout", image=NEW, memory=s.flat(300 * MiB, 20 * MiB),
                               start=-6 * HOUR, kills=[-3 * HOUR], backoff=20 * MINUTE)
    found = curves.runs(memory)
    assert len(found) == 2  # the back-off left 20 min without samples; the ±20Mi wobble never cut


def test_runs_of_one_container_in_several_cadvisor_series_are_joined() -> None:
    """cAdvisor starts a new series (a new id) with each run: the reader joins them per pod and container."""
    [memory, *_] = s.container(PODS[0], "checkout", image=NEW, memory=s.ramp(200 * MiB, 40 * MiB),
                               start=-12 * HOUR, kills=[-4 * HOUR], limits={"memory": LIMIT})
    cut = s.ALERT_AT - 4 * HOUR
    first = memory.model_copy(update={"points": [p for p in memory.points if p[0] < cut]})
    second = memory.model_copy(update={"points": [p for p in memory.points if p[0] >= cut]})
    [joined] = curves.of(s.metrics([first, second]), m.MEMORY)
    assert joined.points == memory.points
    assert len(curves.runs(joined)) == 2


def test_pause_container_and_pod_level_series_are_never_the_workload() -> None:
    [memory, *_] = s.container(PODS[0], "checkout", image=NEW, memory=s.flat(200 * MiB), start=-2 * HOUR)
    pause = memory.model_copy(update={"container": "POD", "points": [(t, 900 * MiB) for t, _ in memory.points]})
    whole = memory.model_copy(update={"container": "", "points": [(t, 950 * MiB) for t, _ in memory.points]})
    found = curves.of(s.metrics([memory, pause, whole]), m.MEMORY)
    assert [x.container for x in found] == ["checkout"]


def test_revisions_are_ordered_by_their_rollout() -> None:
    groups = curves.revisions([x for group in released() for x in group if x.name == m.MEMORY])
    assert [(r.name, r.image, len(r.pods)) for r in groups] == [("5b6c8d9f47", OLD, 3), ("7d9f8b6c5", NEW, 3)]


# ---------------------------------------------------------------- downsampling


def test_downsampling_keeps_each_buckets_peak() -> None:
    points = [(float(i * 300), 100.0) for i in range(864)]
    points[500] = (500 * 300.0, 511.0)  # one five-minute spike in three days
    shown = curves.downsample(points)
    assert len(shown) <= MAX_CURVE_POINTS
    assert (500 * 300.0, 511.0) in shown
    assert curves.downsample(points[:10]) == points[:10]


# ---------------------------------------------------------------- OOM verdicts


def test_a_leak_grows_steadily_between_restarts_to_the_limit() -> None:
    reading = read(s.metrics(*leaking()))
    assert reading.verdict == "leak"
    assert reading.growth_per_hour == pytest.approx(40 * MiB, rel=0.01)
    assert reading.hours_to_limit == pytest.approx((512 - 200) / 40, rel=0.03)
    assert "+40Mi/h" in reading.why and "7 h 4" in reading.why
    assert reading.curve.stats["growth_per_hour"] == pytest.approx(40, rel=0.01)
    assert reading.curve.threshold == 512 and reading.curve.unit == "MiB"
    assert reading.curve.promql == s.PROMQL[m.MEMORY]
    assert len(reading.curve.points) <= MAX_CURVE_POINTS


def test_a_leak_revision_after_revision_of_the_same_image_is_still_a_leak() -> None:
    """A config change rolled the pods (new pod-template-hash, same image): the growth went on, no release to
    blame."""
    before = leaking(EARLIER, start=-3 * DAY - HOUR)
    before = [[x.model_copy(update={"points": [p for p in x.points if p[0] < s.ALERT_AT - DAY]})
               for x in group] for group in before]
    after = leaking(start=-DAY)
    reading = read(s.metrics(*before, *after))
    assert reading.verdict == "leak"
    assert "5b6c8d9f47, 7d9f8b6c5" in reading.why


def test_short_crash_loops_are_not_a_leak() -> None:
    """Killed within minutes of each start: a limit too small for the start-up, not memory piling up."""
    rule = POLICY.memory.curve.model_copy(update={"regression": MemoryRegression(enabled=False)})
    reading = read(s.metrics(*released()), rule=rule)
    assert reading.verdict == "undersized"


def test_a_release_that_climbs_to_the_limit_within_minutes_is_a_regression() -> None:
    reading = read(s.metrics(*released()))
    assert reading.verdict == "regression"
    assert reading.previous is not None and reading.previous.name == "5b6c8d9f47"
    assert reading.current is not None and reading.current.image == NEW
    assert "revision 5b6c8d9f47 (ghcr.io/acme/checkout:1.4.1)" in reading.why
    assert "reached 461Mi (90% of the limit 512Mi) within 5 min of its rollout" in reading.why


@pytest.mark.parametrize(("before", "climb", "verdict"), [
    (400 * MiB, 5, "undersized"),  # the previous revision already ran close to the limit: not the release
    (210 * MiB, 50, "undersized"),  # the new revision took longer than within_minutes to get there
])
def test_what_is_not_a_regression(before: float, climb: float, verdict: str) -> None:
    reading = read(s.metrics(*released(before=before, climb_minutes=climb)))
    assert reading.verdict == verdict


def test_a_plateau_near_the_limit_with_spikes_is_undersized() -> None:
    reading = read(s.metrics(*spiky()))
    assert reading.verdict == "undersized"
    assert reading.peak == 505 * MiB
    assert reading.why.startswith("undersized: peaks at 505Mi (99% of the limit 512Mi), p95 ")
    assert reading.curve.stats["max"] == pytest.approx(505)


def test_samples_far_under_the_limit_say_the_kill_fell_between_scrapes() -> None:
    flat = [s.container(pod, "checkout", image=NEW, memory=s.flat(230 * MiB, 10 * MiB), start=-2 * DAY)
            for pod in PODS]
    reading = read(s.metrics(*flat))
    assert reading.verdict == "below_limit"
    assert "shorter than the scrape interval" in reading.why


def test_the_limit_kube_state_metrics_reported_wins_over_the_one_given() -> None:
    """The reader sizes against the limit the pods ran with (a limit changed since shows in the series)."""
    reading = curves.read_memory(s.metrics(*spiky()), "checkout", limit=1024 * MiB, rule=POLICY.memory.curve,
                                 leak=POLICY.memory.leak)
    assert reading is not None and reading.limit == LIMIT and reading.verdict == "undersized"


def test_no_series_no_reading_and_the_note_says_why() -> None:
    assert curves.read_memory(None, "checkout", limit=LIMIT, rule=POLICY.memory.curve, leak=POLICY.memory.leak) \
        is None
    down = Metrics(status="unavailable", reason="prometheus: connection refused")
    assert curves.read_memory(down, "checkout", limit=LIMIT, rule=POLICY.memory.curve,
                              leak=POLICY.memory.leak) is None
    assert curves.note(None, m.MEMORY, container="checkout") == ""
    assert curves.note(down, m.MEMORY, container="checkout") == "sized without metrics: prometheus: connection refused"
    other = s.metrics(s.container("cart-6f7d8c9b5-zt2kq", "cart", image="ghcr.io/acme/cart:2.0.0",
                                  memory=s.flat(100 * MiB), start=-HOUR))
    assert curves.note(other, m.MEMORY, container="checkout") == (
        "sized without metrics: Prometheus has no memory_working_set_bytes series of container checkout in the window")
    assert curves.note(s.metrics(*spiky()), m.MEMORY, container="checkout") == ""


# ---------------------------------------------------------------- CPU, requests, HPA


def test_cpu_demand_is_the_p95_of_usage_grown_by_the_throttled_share() -> None:
    pods = [s.container(f"search-api-9c6d5b8f7-{x}", "search-api", image="ghcr.io/acme/search-api:5.0.3",
                        cpu=s.flat(0.45, 0.05), throttled=s.flat(0.6, 0.05), start=-3 * DAY,
                        limits={"cpu": 0.5}) for x in ("b7lzg", "v4qpc")]
    reading = curves.read_cpu(s.metrics(*pods), "search-api", limit=0.5)
    assert reading is not None
    assert reading.usage.p95 == pytest.approx(0.5, abs=0.001)
    assert reading.throttled == pytest.approx(0.65, abs=0.001)
    assert reading.demand == pytest.approx(0.5 * 1.65, abs=0.002)
    assert reading.curve.threshold == 0.5 and reading.curve.stats["throttled_p95"] == pytest.approx(65, abs=0.1)


def test_peak_usage_of_earlier_pods() -> None:
    earlier = [s.container(f"report-builder-7f8d9c5b6-{x}", "report-builder", image="ghcr.io/acme/report-builder:2.2.1",
                           memory=s.plateau(6 * 2**30, peak=9.2 * 2**30, every=6 * HOUR), start=-7 * DAY,
                           end=-2 * DAY) for x in ("q4mzt", "w8cnv")]
    usage = curves.peak_usage(s.metrics(*earlier, window=7 * DAY), m.MEMORY, "report-builder", request=24 * 2**30,
                              unit="MiB", factor=MiB)
    assert usage is not None
    assert usage.peak == pytest.approx(9.2 * 2**30) and usage.pods == 2 and usage.revisions == ("7f8d9c5b6",)
    assert usage.curve.threshold == 24 * 1024 and usage.curve.threshold_label == "request 24576 MiB"


@pytest.mark.parametrize(("used", "wanted"), [(0.17, 13), (0.24, 18), (0.12, 9)])
def test_hpa_wants_pods_times_utilization_over_target(used: float, wanted: int) -> None:
    """Ten frontend pods with 200m requests at a 70% target: ceil(10 x used/0.2 / 0.7)."""
    pods = [s.container(f"frontend-84f7c9d6b-{i:05d}", "frontend", image="ghcr.io/acme/frontend:7.12.0",
                        cpu=s.flat(used), start=-3 * DAY, requests={"cpu": 0.2}) for i in range(10)]
    reading = curves.hpa_replicas(s.metrics(*pods), target=70, ceiling=10)
    assert reading is not None
    assert reading.wanted == wanted
    assert reading.utilization.maximum == pytest.approx(used / 0.2 * 100)
    assert reading.curve.threshold == 10 and reading.curve.unit == "replicas"
