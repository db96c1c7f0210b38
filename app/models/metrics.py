"""Metrics as evidence: the series Prometheus returned for the workload, and the curve a PR shows.

Read through a Prometheus-compatible HTTP API (app/adapters/prometheus.py) in the evidence stage, over a window
anchored at the alert's startsAt (never the wall clock), for the workload's pods of every revision still in the
TSDB. Each series is attributed to its revision by the pod-template-hash in the pod name. What the numbers mean
(leak, regression, undersized; p95 of CPU demand) is decided in app/curves.py, pure.

``Metrics.status`` says what the PR must say when there is nothing to size from: not configured, unreachable
(also a dependency error), or no data for this workload. Detectors and fixers fall back to today's rules then.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The series the evidence stage reads (the names detectors and fixers ask for), and their units.
MEMORY = "memory_working_set_bytes"  # cAdvisor container_memory_working_set_bytes
CPU_USAGE = "cpu_usage_cores"  # rate(container_cpu_usage_seconds_total[5m])
CPU_THROTTLED = "cpu_throttled_ratio"  # throttled periods / periods, over 5m
MEMORY_LIMIT = "memory_limit_bytes"  # kube_pod_container_resource_limits{resource="memory"}
CPU_LIMIT = "cpu_limit_cores"  # kube_pod_container_resource_limits{resource="cpu"}
MEMORY_REQUEST = "memory_request_bytes"  # kube_pod_container_resource_requests{resource="memory"}
CPU_REQUEST = "cpu_request_cores"  # kube_pod_container_resource_requests{resource="cpu"}
RESTARTS = "restarts_total"  # kube_pod_container_status_restarts_total
NAMES = (MEMORY, CPU_USAGE, CPU_THROTTLED, MEMORY_LIMIT, CPU_LIMIT, MEMORY_REQUEST, CPU_REQUEST, RESTARTS)

Point = tuple[float, float]  # (Unix seconds, value)
Status = Literal["ok", "not_configured", "unavailable", "no_data"]


class Series(BaseModel):
    """One container of one pod: its samples over the window, oldest first."""

    model_config = ConfigDict(frozen=True)

    name: str  # one of NAMES
    pod: str
    container: str
    revision: str | None = None  # the pod-template-hash in the pod name (Deployments); None when not derivable
    image: str | None = None  # cAdvisor's image label, when the series has one
    points: list[Point] = Field(default_factory=list)


class Query(BaseModel):
    """A query as sent (the PR shows it, so a reviewer can run it in Grafana or the Prometheus UI)."""

    model_config = ConfigDict(frozen=True)

    name: str  # one of NAMES
    promql: str
    start: float
    end: float
    step: float  # seconds; chosen to keep each answer under about 1,000 points


class Metrics(BaseModel):
    """What Prometheus said about the workload over the window, or why nothing."""

    model_config = ConfigDict(frozen=True)

    status: Status
    reason: str = ""  # when not ok: "AUTOFIX_PROMETHEUS_URL is not set", "prometheus: connection refused", ...
    source: str = ""  # the API's base URL (no credentials)
    start: float = 0.0  # the window: [start, end], end = the alert's startsAt
    end: float = 0.0
    queries: list[Query] = Field(default_factory=list)
    series: list[Series] = Field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.status == "ok" and bool(self.series)

    def of(self, name: str, *, container: str | None = None) -> list[Series]:
        """The series of one metric, optionally of one container, oldest pod first."""
        found = [s for s in self.series if s.name == name and (container is None or s.container == container)]
        return sorted(found, key=lambda s: (s.points[0][0] if s.points else 0.0, s.pod))

    def query(self, name: str) -> Query | None:
        return next((q for q in self.queries if q.name == name), None)

    def said(self) -> str:
        """One line for the PR when the sizing could not use metrics."""
        if self.usable:
            return ""
        return f"sized without metrics: {self.reason or self.status.replace('_', ' ')}"


class Curve(BaseModel):
    """The chart a PR shows for a sizing decision: a metric against its limit or request over the window,
    downsampled, with its statistics and the query. Made by the fixer that used the data (Plan.curve)."""

    model_config = ConfigDict(frozen=True)

    title: str  # "memory working set of checkout (all pods)"
    unit: str  # "MiB", "cores", "%"
    points: list[Point]  # downsampled to at most MAX_CURVE_POINTS
    threshold: float | None = None  # the current limit or request, same unit
    threshold_label: str = ""  # "limit 512Mi"
    proposed: float | None = None  # the new value, same unit
    stats: dict[str, float] = Field(default_factory=dict)  # min, p50, p95, max, growth_per_hour, ...
    promql: str = ""
    verdict: str = ""  # "undersized: a plateau near the limit with spikes", "leak: +38 MiB/h", ...
    end: float | None = None  # the window's end (Metrics.end, the alert's startsAt): the chart's 0; None: last point


MAX_CURVE_POINTS = 60
