"""Reading the curve: what the series Prometheus returned say about a workload (pure).

The evidence stage reads the series (app/models/metrics.py: one per pod and container, attributed to its revision
by the pod-template-hash); the fixers ask here what they mean, with the policy's thresholds:

- statistics of a set of samples (min, p50, p95, max) and, per container run, growth by least squares;
- runs: a series cut where the container restarted, seen as a drop of the working set, an increment of
  kube-state-metrics' restart counter, or a gap in the samples (a container in CrashLoopBackOff has none);
- an OOM kill read from the working set: a leak (most runs grow along a straight line until the limit), a
  regression after a release (the previous revision ran flat well under the limit, the new one climbs to it within
  minutes of its rollout), undersized (the working set reaches the limit, no steady growth), or a kill the samples
  never came near (a spike between two scrapes);
- CPU demand (p95 of usage, grown by the share of throttled periods), the peak usage of earlier pods, and the
  replicas an HPA would want from the observed utilization;
- the Curve a PR shows: the samples of every pod merged (per timestamp the largest), downsampled to
  ``MAX_CURVE_POINTS`` buckets keeping each bucket's largest value, so peaks survive.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from app.models import metrics as m
from app.models.metrics import MAX_CURVE_POINTS, Curve, Metrics, Point, Series
from app.policies import MemoryCurve, MemoryLeak
from app.quantities import format_duration

MiB = 2**20
DROP = 0.3  # a working set falling by 30% from one sample to the next: the container restarted
GAP = 2.5  # samples missing for 2.5 steps: the container was not running (CrashLoopBackOff), a restart
PAUSE = "POD"  # cAdvisor's pause container: never the workload's


# ---------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated linearly between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Stats:
    minimum: float
    p50: float
    p95: float
    maximum: float
    samples: int

    def scaled(self, factor: float) -> dict[str, float]:
        """The table a Curve carries, in the curve's unit (values / factor)."""
        return {"min": self.minimum / factor, "p50": self.p50 / factor, "p95": self.p95 / factor,
                "max": self.maximum / factor}


def stats(values: Iterable[float]) -> Stats | None:
    found = list(values)
    if not found:
        return None
    return Stats(minimum=min(found), p50=percentile(found, 50), p95=percentile(found, 95), maximum=max(found),
                 samples=len(found))


def fit(points: Sequence[Point]) -> tuple[float, float]:
    """Least squares line through the points: (slope per second, r^2). A flat or single point fits nothing (0, 0)."""
    if len(points) < 3:
        return 0.0, 0.0
    t0 = points[0][0]
    xs = [t - t0 for t, _ in points]
    ys = [v for _, v in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return 0.0, 0.0
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return sxy / sxx, (sxy * sxy) / (sxx * syy)


# ---------------------------------------------------------------- runs between restarts


@dataclass(frozen=True)
class Run:
    """One container's life between two restarts: a piece of one series."""

    pod: str
    revision: str | None
    image: str | None
    points: tuple[Point, ...]
    restarted_before: bool  # it began at a restart (not where the series or the window begins)
    restarted_after: bool  # a restart ended it (not the end of the series)
    slope: float = field(init=False)  # per second, least squares
    r2: float = field(init=False)

    def __post_init__(self) -> None:
        slope, r2 = fit(self.points)
        object.__setattr__(self, "slope", slope)
        object.__setattr__(self, "r2", r2)

    @property
    def start(self) -> float:
        return self.points[0][0]

    @property
    def end(self) -> float:
        return self.points[-1][0]

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def first(self) -> float:
        return self.points[0][1]

    @property
    def last(self) -> float:
        return self.points[-1][1]

    @property
    def peak(self) -> float:
        return max(v for _, v in self.points)

    @property
    def per_hour(self) -> float:
        return self.slope * 3600


def step_of(points: Sequence[Point]) -> float:
    """The series' sampling step: the median spacing of its samples."""
    gaps = [b[0] - a[0] for a, b in zip(points, points[1:], strict=False)]
    return statistics.median(gaps) if gaps else 0.0


def runs(series: Series, restarts: Series | None = None, *, drop: float = DROP) -> list[Run]:
    """The series cut at each restart: a drop of more than ``drop`` of the value, a gap of ``GAP`` steps or more,
    or an increment of the restart counter (the first sample after the counter's last reading before it)."""
    points = sorted(series.points)
    if not points:
        return []
    step = step_of(points)
    cuts = {i for i in range(1, len(points)) if _restarted(points[i - 1], points[i], step=step, drop=drop)}
    cuts |= _counter_cuts(points, restarts, cuts)
    found: list[Run] = []
    bounds = [0, *sorted(cuts), len(points)]
    for n, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        if a < b:
            found.append(Run(pod=series.pod, revision=series.revision, image=series.image,
                             points=tuple(points[a:b]), restarted_before=n > 0, restarted_after=b < len(points)))
    return found


def _restarted(before: Point, after: Point, *, step: float, drop: float) -> bool:
    if step > 0 and after[0] - before[0] >= GAP * step:
        return True
    return before[1] > 0 and after[1] < before[1] * (1 - drop)


def _counter_cuts(points: Sequence[Point], restarts: Series | None, seen: set[int]) -> set[int]:
    """Restarts the counter shows and the samples do not: the first sample past the counter's reading before an
    increment starts the new run, unless a drop or a gap within two samples of it already says where (the
    working set is read as the largest value of each step, so the step after a kill may still show its peak)."""
    if restarts is None:
        return set()
    cuts = set()
    counter = sorted(restarts.points)
    for (t0, c0), (_, c1) in zip(counter, counter[1:], strict=False):
        if c1 > c0:
            index = next((i for i, (t, _) in enumerate(points) if t > t0), None)
            if index and not seen & set(range(index - 1, index + 3)):
                cuts.add(index)
    return cuts


# ---------------------------------------------------------------- revisions


@dataclass(frozen=True)
class Revision:
    """The series of one revision (pod-template-hash) of the container, oldest revision first."""

    name: str  # the pod-template-hash, else the image, else "unknown"
    image: str | None
    series: tuple[Series, ...]

    @property
    def start(self) -> float:
        return min(s.points[0][0] for s in self.series)

    @property
    def end(self) -> float:
        return max(s.points[-1][0] for s in self.series)

    @property
    def values(self) -> list[float]:
        return [v for s in self.series for _, v in s.points]

    @property
    def pods(self) -> set[str]:
        return {s.pod for s in self.series}


def revisions(series: Sequence[Series]) -> list[Revision]:
    """The series grouped by revision, ordered by their first sample (the rollout)."""
    groups: dict[str, list[Series]] = {}
    for s in series:
        if s.points:
            groups.setdefault(s.revision or s.image or "unknown", []).append(s)
    found = [Revision(name=name, image=next((s.image for s in group if s.image), None), series=tuple(group))
             for name, group in groups.items()]
    return sorted(found, key=lambda r: r.start)


def of(metrics: Metrics | None, name: str, *, container: str | None = None) -> list[Series]:
    """The usable series of one metric, one per pod and container (never the pause container or a pod-level
    series without a container), oldest pod first."""
    if metrics is None or not metrics.usable:
        return []
    return per_pod(s for s in metrics.of(name, container=container) if s.points and s.container not in ("", PAUSE))


def per_pod(series: Iterable[Series]) -> list[Series]:
    """One series per pod and container: cAdvisor starts a new series (a new ``id``) with each run of a
    container, so runs of one container are joined, the largest value kept where they overlap (Prometheus still
    returns a run's last sample for its lookback after the run ended)."""
    groups: dict[tuple[str, str], list[Series]] = {}
    for s in series:
        groups.setdefault((s.pod, s.container), []).append(s)
    joined = []
    for group in groups.values():
        if len(group) == 1:
            joined.append(group[0])
            continue
        newest = max(group, key=lambda s: s.points[-1][0])
        joined.append(newest.model_copy(update={"points": merged(group)}))
    return sorted(joined, key=lambda s: (s.points[0][0], s.pod))


def note(metrics: Metrics | None, name: str, *, container: str | None) -> str:
    """What the PR says when a sizing could not use metrics ("" when it could, or when none were looked for)."""
    if metrics is None:
        return ""
    if not metrics.usable:
        return metrics.said()
    if of(metrics, name, container=container):
        return ""
    whose = f" of container {container}" if container else ""
    return f"sized without metrics: Prometheus has no {name} series{whose} in the window"


# ---------------------------------------------------------------- the curve a PR shows


def merged(series: Iterable[Series]) -> list[Point]:
    """Per timestamp, the largest value across the series (the pod closest to its limit), oldest first."""
    top: dict[float, float] = {}
    for s in series:
        for t, v in s.points:
            top[t] = max(v, top.get(t, v))
    return sorted(top.items())


def downsample(points: Sequence[Point], *, start: float | None = None, end: float | None = None,
               limit: int = MAX_CURVE_POINTS) -> list[Point]:
    """At most ``limit`` points: the window cut in equal buckets, each bucket's largest value at its own time (a
    peak or a kill must survive the chart)."""
    if len(points) <= limit:
        return list(points)
    lo = points[0][0] if start is None else start
    hi = points[-1][0] if end is None else end
    width = (hi - lo) / limit or 1.0
    buckets: dict[int, Point] = {}
    for t, v in points:
        key = min(limit - 1, max(0, int((t - lo) // width)))
        if key not in buckets or v > buckets[key][1]:
            buckets[key] = (t, v)
    return [buckets[k] for k in sorted(buckets)]


def curve(metrics: Metrics, name: str, series: Sequence[Series], *, title: str, unit: str, factor: float,
          threshold: float | None, threshold_label: str, verdict: str,
          extra: dict[str, float] | None = None) -> Curve:
    """The chart of ``series`` (values / ``factor`` in ``unit``) against a threshold, with its table and query."""
    points = merged(series)
    found = stats(v for _, v in points)
    table = found.scaled(factor) if found else {}
    query = metrics.query(name)
    return Curve(title=title, unit=unit, verdict=verdict, promql=query.promql if query else "",
                 points=[(t, round(v / factor, 4)) for t, v in downsample(points, start=metrics.start,
                                                                           end=metrics.end)],
                 threshold=None if threshold is None else threshold / factor, threshold_label=threshold_label,
                 stats={k: round(v, 4) for k, v in {**table, **(extra or {})}.items()}, end=metrics.end or None)


def mib(value: float) -> str:
    return f"{value / MiB:.0f}Mi"


# ---------------------------------------------------------------- OOM kills


Verdict = Literal["leak", "regression", "undersized", "below_limit"]


@dataclass(frozen=True)
class MemoryReading:
    """What the working set says about an OOM kill, with the numbers each verdict's reason quotes."""

    verdict: Verdict
    why: str  # one sentence, for the plan's reason or the no_fix
    limit: float  # bytes, the current revision's
    peak: float  # bytes, the current revision's largest sample
    curve: Curve
    growth_per_hour: float | None = None  # bytes per hour, the leaking runs' median
    hours_to_limit: float | None = None  # from a restart to the limit, at that pace
    previous: Revision | None = None  # regression: the revision before the release
    current: Revision | None = None


def read_memory(metrics: Metrics | None, container: str, *, limit: float, rule: MemoryCurve,
                leak: MemoryLeak) -> MemoryReading | None:
    """The verdict of the working set of ``container`` against its memory limit (bytes; the cluster's, unless
    kube-state-metrics says otherwise per revision); None without series."""
    series = of(metrics, m.MEMORY, container=container)
    if metrics is None or not series:
        return None
    restarts = {s.pod: s for s in of(metrics, m.RESTARTS, container=container)}
    groups = revisions(series)
    current = groups[-1]
    current_limit = limit_of(metrics, container, current.pods) or limit
    peak = max(current.values)
    near = rule.near_limit * current_limit
    all_runs = [r for s in series for r in runs(s, restarts.get(s.pod))]

    def shown(verdict: str, extra: dict[str, float] | None = None) -> Curve:
        return curve(metrics, m.MEMORY, series, title=f"memory working set of {container} (all pods)", unit="MiB",
                     factor=MiB, threshold=current_limit, threshold_label=f"limit {mib(current_limit)}",
                     verdict=verdict, extra=extra)

    regression = _regression(metrics, container, groups, limit=limit, rule=rule) if rule.regression.enabled else None
    if regression is not None:
        previous, climb, previous_limit = regression
        within = format_duration(max(climb, min(step_of(x.points) for x in current.series)))  # one sample at least
        why = (f"regression after a release: revision {previous.name} ({previous.image or 'image unknown'}) ran "
               f"{format_duration(previous.end - previous.start)} with a peak of {mib(max(previous.values))} "
               f"({max(previous.values) / previous_limit:.0%} of its limit {mib(previous_limit)}); revision "
               f"{current.name} ({current.image or 'image unknown'}) reached {mib(near)} "
               f"({rule.near_limit:.0%} of the limit {mib(current_limit)}) within {within} of its rollout")
        return MemoryReading(verdict="regression", why=why, limit=current_limit, peak=peak, previous=previous,
                             current=current, curve=shown(f"regression: revision {current.name} reached the limit "
                                                          f"within {within} of its rollout, {previous.name} peaked at "
                                                          f"{mib(max(previous.values))}"))
    steady = _leaking(all_runs, image=current.image, near=near, rule=leak) if leak.enabled else None
    if steady is not None:
        growth = statistics.median(r.per_hour for r in steady)
        start = statistics.median(r.first for r in steady)
        hours = (current_limit - start) / growth
        newest = max((r for r in all_runs if r.image == current.image), key=lambda r: r.end)
        left = (f"; the newest run (pod {newest.pod}) is at {mib(newest.last)}, about "
                f"{format_duration(max(current_limit - newest.last, 0) / growth * 3600)} from the limit"
                if not newest.restarted_after and newest.last < current_limit and newest.per_hour > 0 else "")
        completed = [r for r in all_runs if r.restarted_after and r.image == current.image]
        why = (f"leak: the working set grows steadily between restarts, +{mib(growth)}/h (median of {len(steady)} "
               f"of {len(completed)} runs ended by a restart, each a straight line with r^2 >= {leak.min_fit:g}, "
               f"{_images(steady)}), from about {mib(start)} after a restart to the limit {mib(current_limit)} in "
               f"about {format_duration(hours * 3600)}{left}")
        return MemoryReading(verdict="leak", why=why, limit=current_limit, peak=peak, growth_per_hour=growth,
                             hours_to_limit=hours, current=current,
                             curve=shown(f"leak: +{mib(growth)}/h, the limit in {format_duration(hours * 3600)}",
                                         {"growth_per_hour": growth / MiB, "hours_to_limit": hours}))
    summary = stats(current.values)
    assert summary is not None  # a revision has samples
    if peak >= near:
        why = (f"undersized: peaks at {mib(peak)} ({peak / current_limit:.0%} of the limit {mib(current_limit)}), "
               f"p95 {mib(summary.p95)}, p50 {mib(summary.p50)} (revision {current.name}), no steady growth "
               "between restarts")
        return MemoryReading(verdict="undersized", why=why, limit=current_limit, peak=peak, current=current,
                             curve=shown(f"undersized: peaks at {mib(peak)}, {peak / current_limit:.0%} of the limit"))
    why = (f"the samples never came near the limit: revision {current.name} peaks at {mib(peak)} "
           f"({peak / current_limit:.0%} of {mib(current_limit)}): the kill came from a spike shorter than the "
           "scrape interval")
    return MemoryReading(verdict="below_limit", why=why, limit=current_limit, peak=peak, current=current,
                         curve=shown(f"peaks at {mib(peak)}: the kill fell between two samples"))


def limit_of(metrics: Metrics, container: str, pods: set[str], *, name: str = m.MEMORY_LIMIT) -> float | None:
    """The limit kube-state-metrics reported last for these pods' container (None: not recorded)."""
    found = [s for s in of(metrics, name, container=container) if s.pod in pods]
    if not found:
        return None
    return max(found, key=lambda s: s.points[-1][0]).points[-1][1] or None


def _regression(metrics: Metrics, container: str, groups: list[Revision], *, limit: float,
                rule: MemoryCurve) -> tuple[Revision, float, float] | None:
    """(the revision before, seconds from the rollout to the limit, its limit) when the newest revision climbed to
    the limit soon after its rollout while the one before ran flat well under it."""
    if len(groups) < 2:
        return None
    previous, current = groups[-2], groups[-1]
    previous_limit = limit_of(metrics, container, previous.pods) or limit
    current_limit = limit_of(metrics, container, current.pods) or limit
    ran = previous.end - previous.start
    if ran < rule.regression.previous_minutes * 60 or max(previous.values) > rule.regression.previous_below * \
            previous_limit:
        return None
    near = rule.near_limit * current_limit
    reached = min((t for s in current.series for t, v in s.points if v >= near), default=None)
    if reached is None or reached - current.start > rule.regression.within_minutes * 60:
        return None
    return previous, reached - current.start, previous_limit


def _leaking(all_runs: list[Run], *, image: str | None, near: float, rule: MemoryLeak) -> list[Run] | None:
    """The runs of ``image`` that grew along a straight line until the limit, when they make a leak."""
    completed = [r for r in all_runs if r.restarted_after and (image is None or r.image == image)]
    steady = [r for r in completed if r.seconds >= rule.min_run_minutes * 60 and r.slope > 0
              and r.r2 >= rule.min_fit and r.peak >= near]
    if len(steady) < rule.min_kills or len(steady) < rule.min_share * len(completed):
        return None
    return steady


def _images(found: Sequence[Run]) -> str:
    pods = sorted({r.pod for r in found})
    names = sorted({r.revision or "?" for r in found})
    images = sorted({r.image for r in found if r.image})
    return (f"{len(pods)} pod(s) of revision(s) {', '.join(names)}" + (f", image {', '.join(images)}" if images
                                                                          else ""))


# ---------------------------------------------------------------- CPU


@dataclass(frozen=True)
class CpuReading:
    usage: Stats  # cores, every sample of every pod
    throttled: float  # p95 of the share of throttled CFS periods (0..1); 0 when not recorded
    demand: float  # cores: usage p95 x (1 + throttled)
    curve: Curve


def read_cpu(metrics: Metrics | None, container: str, *, limit: float | None) -> CpuReading | None:
    """CPU demand of ``container`` over the window: usage is capped by the quota, so the p95 of usage is grown by
    the share of periods the quota cut off. ``limit`` in cores (the chart's line)."""
    series = of(metrics, m.CPU_USAGE, container=container)
    if metrics is None or not series:
        return None
    usage = stats(v for s in series for _, v in s.points)
    assert usage is not None
    ratios = [v for s in of(metrics, m.CPU_THROTTLED, container=container) for _, v in s.points]
    throttled = min(max(percentile(ratios, 95), 0.0), 1.0) if ratios else 0.0
    demand = usage.p95 * (1 + throttled)
    shown = curve(metrics, m.CPU_USAGE, series, title=f"CPU usage of {container} (all pods)", unit="cores",
                  factor=1.0, threshold=limit, threshold_label=f"limit {limit:g} cores" if limit else "",
                  verdict=f"demand {demand:.3g} cores: p95 of usage {usage.p95:.3g} x (1 + {throttled:.0%} throttled)",
                  extra={"throttled_p95": round(throttled * 100, 1)} if ratios else None)
    return CpuReading(usage=usage, throttled=throttled, demand=demand, curve=shown)


# ---------------------------------------------------------------- peak usage (requests)


@dataclass(frozen=True)
class Usage:
    peak: float  # base units: bytes, or cores
    pods: int
    revisions: tuple[str, ...]
    curve: Curve


def peak_usage(metrics: Metrics | None, name: str, container: str, *, request: float, unit: str,
               factor: float) -> Usage | None:
    """The largest usage (``name``: MEMORY or CPU_USAGE) of every pod of ``container`` in the window, against its
    request (base units; ``factor`` converts to the chart's ``unit``)."""
    series = of(metrics, name, container=container)
    if metrics is None or not series:
        return None
    peak = max(v for s in series for _, v in s.points)
    names = tuple(r.name for r in revisions(series))
    label = f"{request / factor:g} {unit}"
    shown = curve(metrics, name, series, title=f"{'memory working set' if name == m.MEMORY else 'CPU usage'} of "
                  f"{container} (pods of revision(s) {', '.join(names)})", unit=unit, factor=factor,
                  threshold=request, threshold_label=f"request {label}",
                  verdict=f"peak usage {peak / factor:.4g} {unit} over {len({s.pod for s in series})} pod(s)")
    return Usage(peak=peak, pods=len({s.pod for s in series}), revisions=names, curve=shown)


# ---------------------------------------------------------------- HPA


@dataclass(frozen=True)
class Replicas:
    wanted: int  # the largest count the HPA would have wanted over the window
    utilization: Stats  # percent of request, pods averaged per timestamp
    curve: Curve


def hpa_replicas(metrics: Metrics | None, *, target: float, ceiling: int) -> Replicas | None:
    """The replicas an HPA with a CPU utilization ``target`` (percent of request) would have wanted at each
    timestamp: ceil(pods x sum(usage) / sum(request) / target), its formula, from the pods' usage and requests."""
    usage = of(metrics, m.CPU_USAGE)
    requests = of(metrics, m.CPU_REQUEST)
    if metrics is None or not usage or not requests or target <= 0:
        return None
    used = _per_time_and_pod(usage)
    asked = _per_pod(requests)
    wanted: list[Point] = []
    utilization: list[float] = []
    for t, pods in sorted(used.items()):
        total_request = sum(asked.get(pod, 0.0) for pod in pods)
        if total_request <= 0:
            continue
        ratio = sum(pods.values()) / total_request * 100
        utilization.append(ratio)
        wanted.append((t, math.ceil(len(pods) * ratio / target - 1e-9)))
    if not wanted:
        return None
    most = int(max(v for _, v in wanted))
    table = stats(utilization)
    assert table is not None
    query = metrics.query(m.CPU_USAGE)
    shown = Curve(title="replicas the HPA would want (CPU utilization / target)", unit="replicas",
                  points=downsample(wanted, start=metrics.start, end=metrics.end), threshold=float(ceiling),
                  threshold_label=f"maxReplicas {ceiling}",
                  stats={"utilization_p50": round(table.p50, 1), "utilization_p95": round(table.p95, 1),
                         "utilization_max": round(table.maximum, 1), "target": target, "max": float(most)},
                  promql=query.promql if query else "", end=metrics.end or None,
                  verdict=f"would want up to {most} replicas at {target:g}% of request")
    return Replicas(wanted=most, utilization=table, curve=shown)


def _per_time_and_pod(series: Sequence[Series]) -> dict[float, dict[str, float]]:
    """Per timestamp, per pod, the sum over its containers."""
    out: dict[float, dict[str, float]] = {}
    for s in series:
        for t, v in s.points:
            pods = out.setdefault(t, {})
            pods[s.pod] = pods.get(s.pod, 0.0) + v
    return out


def _per_pod(series: Sequence[Series]) -> dict[str, float]:
    """Per pod, the sum over its containers of each one's last value (a request changes only with a new pod)."""
    found: dict[str, dict[str, float]] = {}
    for s in series:
        found.setdefault(s.pod, {})[s.container] = s.points[-1][1]
    return {pod: sum(values.values()) for pod, values in found.items()}
