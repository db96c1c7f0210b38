"""Series shaped like what the evidence stage hands the fixers (app/models/metrics.py), for the unit tests.

As Prometheus answers a range query over a kube-prometheus-stack install: one series per pod and container
(pod ``<deployment>-<pod-template-hash>-<5 chars>``, its revision the hash), samples every ``STEP`` seconds on the
query's grid from the pod's start to its end or the window's end (the alert's startsAt); a container killed at its
limit starts again low, so the working set drops where kube-state-metrics' restart counter goes up; a container in
back-off has no samples for a while. Time is in seconds relative to the alert, negative before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from app.models import metrics as m
from app.models.metrics import Metrics, Query, Series

MiB = 2**20
GiB = 2**30
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
STEP = 300.0  # 3 days / 864 points: the step the reader chooses to stay under 1,000 points
Shape = Callable[[float], float]  # value at a run's age (seconds since the container started)

# The oom-deployment scenario's alert: KubePodCrashLooping on shop/checkout-7d9f8b6c5-abcde.
ALERT_AT = datetime.fromisoformat("2026-11-23T15:15:16+00:00").timestamp()
PROMQL = {
    m.MEMORY: 'max by (namespace, pod, container, image) (container_memory_working_set_bytes{job="kubelet", '
              'metrics_path="/metrics/cadvisor", namespace="shop", pod=~"checkout-.*", container!="", '
              'container!="POD"})',
    m.CPU_USAGE: 'sum by (namespace, pod, container, image) (rate(container_cpu_usage_seconds_total{job="kubelet", '
                 'metrics_path="/metrics/cadvisor", namespace="shop", container!="", container!="POD"}[5m]))',
}


def grid(start: float, end: float, *, at: float = ALERT_AT, step: float = STEP) -> list[float]:
    """The query's sample times (Unix seconds) from ``start`` to ``end`` (offsets from the alert)."""
    first = at + start
    first = first + (-(first - at) % step)  # on the grid that ends at the alert
    count = int((at + end - first) // step) + 1
    return [first + i * step for i in range(max(count, 0))]


def run_values(times: Sequence[float], shape: Shape, *, started: float, kills: Sequence[float] = (),
               limit: float | None = None, backoff: float = 0.0, peak_of_step: bool = False,
               at: float = ALERT_AT) -> list[tuple[float, float]]:
    """Samples of one container through its restarts: ``shape`` of the age since the last (re)start, capped at
    ``limit``; no samples for ``backoff`` seconds after each kill (CrashLoopBackOff). ``peak_of_step``: each
    point is the largest of the scrapes (every minute) in the step before it, as the reader's
    max_over_time(container_memory_working_set_bytes[step]) answers (a kill's peak shows in the step after it)."""
    starts = [at + started, *sorted(at + k for k in kills)]

    def scrape(t: float) -> float | None:
        if t < starts[0]:
            return None
        begun = max(x for x in starts if x <= t)
        if begun != starts[0] and t - begun < backoff:
            return None
        value = shape(t - begun)
        return min(value, limit) if limit is not None else value

    points = []
    for t in times:
        scrapes = [t - k * MINUTE for k in range(int(STEP // MINUTE))] if peak_of_step else [t]
        found = [v for v in map(scrape, scrapes) if v is not None]
        if found:
            points.append((t, max(found)))
    return points


def series(name: str, pod: str, container: str, points: list[tuple[float, float]], *,
           image: str | None = None) -> Series:
    revision = pod.rsplit("-", 2)[1] if pod.count("-") >= 2 else None
    return Series(name=name, pod=pod, container=container, revision=revision, image=image, points=points)


def container(pod: str, name: str, *, image: str, memory: Shape | None = None, cpu: Shape | None = None,
              throttled: Shape | None = None, start: float, end: float = 0.0, kills: Sequence[float] = (),
              limits: dict[str, float] | None = None, requests: dict[str, float] | None = None,
              backoff: float = 0.0) -> list[Series]:
    """Every series of one container of one pod, as the evidence stage names them."""
    times = grid(start, end)
    limits, requests = limits or {}, requests or {}
    found = []
    if memory is not None:
        found.append(series(m.MEMORY, pod, name, run_values(times, memory, started=start, kills=kills,
                                                            limit=limits.get("memory"), backoff=backoff,
                                                            peak_of_step=True), image=image))
    if cpu is not None:
        found.append(series(m.CPU_USAGE, pod, name, run_values(times, cpu, started=start, kills=kills,
                                                               backoff=backoff), image=image))
    if throttled is not None:
        found.append(series(m.CPU_THROTTLED, pod, name, run_values(times, throttled, started=start, kills=kills,
                                                                   backoff=backoff), image=image))
    for key, metric in (("memory", m.MEMORY_LIMIT), ("cpu", m.CPU_LIMIT)):
        if key in limits:
            found.append(series(metric, pod, name, [(t, limits[key]) for t in times]))
    for key, metric in (("memory", m.MEMORY_REQUEST), ("cpu", m.CPU_REQUEST)):
        if key in requests:
            found.append(series(metric, pod, name, [(t, requests[key]) for t in times]))
    counted = sorted(ALERT_AT + k for k in kills)
    found.append(series(m.RESTARTS, pod, name, [(t, float(sum(1 for k in counted if k <= t))) for t in times]))
    return found


def metrics(*groups: list[Series], window: float = 3 * DAY) -> Metrics:
    """What the evidence stage hands over: status ok, the window ending at the alert, the queries as sent."""
    start = ALERT_AT - window
    queries = [Query(name=name, promql=PROMQL.get(name, f"{name}{{namespace=\"shop\"}}"), start=start, end=ALERT_AT,
                     step=STEP) for name in m.NAMES]
    return Metrics(status="ok", source="http://prometheus.monitoring.svc:9090", start=start, end=ALERT_AT,
                   queries=queries, series=[s for group in groups for s in group])


def ramp(base: float, per_hour: float) -> Shape:
    return lambda age: base + per_hour * age / HOUR


def flat(value: float, wobble: float = 0.0) -> Shape:
    """A steady value with a deterministic wobble (a real working set is never a straight line)."""
    return lambda age: value + wobble * ((int(age // STEP) * 7919) % 13 - 6) / 6


def plateau(base: float, *, peak: float, every: float, width: float = STEP) -> Shape:
    """A plateau at ``base`` with a ``peak`` for ``width`` seconds every ``every`` seconds."""
    return lambda age: peak if age % every < width and age >= every else base
