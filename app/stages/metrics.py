"""Metrics as evidence (part of the evidence stage): what Prometheus recorded about the workload's pods before the
alert, read through the MetricsReader port (app/adapters/prometheus.py) into app.models.metrics.Metrics.

The window ends at the alert's startsAt, never the wall clock, and looks back the policy's hours (``metrics``:
memory and CPU 3 days, requests 7 days; usage too when the workload's pods are Pending, since a request is being
sized from earlier revisions). The step keeps each series under ``max_points`` samples.

The workload's pods of every revision are selected by name, as their controllers name them (``pod_pattern``):
a Deployment's ``<name>-<pod-template-hash>-<5>`` (the hash is the revision each series is attributed to), a
StatefulSet's ``<name>-<ordinal>``, a DaemonSet's or Job's ``<name>-<5>``, a CronJob's ``<name>-<schedule>-<5>``.
cAdvisor's pod cgroup (no container label) and the sandbox's pause container (container="POD") are excluded.
Label names come from the policy where an install relabels them.

Nothing here fails the job: not configured, Prometheus unreachable or erroring (a dependency error the adapter
reported), or nothing recorded for these pods, each gives a Metrics whose status and one-line reason the PR
shows ("sized without metrics: ..."). All queries of one alert share ``budget_seconds`` (and at most half of
what is left of the job's budget): past it the remaining queries are not sent.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass

from app import deadlines, dependencies, kube
from app.errors import TemporaryError
from app.models import metrics as m
from app.models.metrics import Metrics, Query, Series
from app.policies import MetricsPolicy
from app.ports import MetricsReader, RawSeries

log = logging.getLogger(__name__)

# Kubernetes' rand.SafeEncodeString alphabet: the pod-template-hash uses it (so a sibling workload's word with a
# vowel, checkout-agent-..., is not taken for a hash). A pod's 5-character suffix does too, but hand-written
# manifests and fixtures name pods freely (checkout-7d9f8b6c5-abcde): any lowercase alphanumerics there.
SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
SUFFIX = "[a-z0-9]{5}"
RATE_RANGE = "5m"
SHARE_OF_JOB_BUDGET = 0.5  # the queries never take more than this share of what is left of the job's budget
NOT_SET = "AUTOFIX_PROMETHEUS_URL is not set"
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


@dataclass(frozen=True)
class Workload:
    """Whose pods to read: the object that owns them (an HPA's target, not the HPA)."""

    kind: str
    namespace: str
    name: str
    pending: bool = False  # some of its pods wait to be scheduled: requests are being sized


def pod_pattern(kind: str, name: str) -> str | None:
    """The RE2 pattern (Prometheus anchors it) of the pod names ``kind`` ``name`` gives its pods; for a
    Deployment, group 1 is the pod-template-hash. None for kinds that have no pods of their own."""
    if not _NAME.fullmatch(name):
        return None
    base = name.replace(".", "[.]")  # a DNS subdomain: only the dot needs quoting (and no backslash in PromQL)
    return {
        "Deployment": f"{base}-({SAFE}{{1,10}})-{SUFFIX}",
        "StatefulSet": f"{base}-[0-9]+",
        "DaemonSet": f"{base}-{SUFFIX}",
        "Job": f"{base}-{SUFFIX}",
        "CronJob": f"{base}-[0-9]+-{SUFFIX}",
        kube.POD: base,
    }.get(kind)


def revision_of(kind: str, name: str, pod: str) -> str | None:
    """The revision a pod belongs to, from its name: a Deployment's pod-template-hash; None otherwise."""
    pattern = pod_pattern(kind, name)
    if kind != "Deployment" or pattern is None:
        return None
    found = re.fullmatch(pattern, pod)
    return found.group(1) if found else None


def step_for(window_seconds: float, policy: MetricsPolicy) -> float:
    """Seconds between points: at most ``max_points`` per series, a whole minute, never below the minimum."""
    per_point = window_seconds / policy.max_points
    return float(max(policy.min_step_seconds, math.ceil(per_point / 60) * 60))


@dataclass(frozen=True)
class Planned:
    name: str
    promql: str
    start: float
    end: float
    step: float
    cadvisor: bool  # a usage series (working set, CPU): what "no data" is judged on


def plan(workload: Workload, *, end: float, policy: MetricsPolicy) -> list[Planned]:
    """The queries, in the order they are sent (usage first: what sizing needs most)."""
    pattern = pod_pattern(workload.kind, workload.name)
    assert pattern is not None, "plan() is called for kinds with pods"
    labels = policy.labels
    ns, pod, container, image = labels.namespace, labels.pod, labels.container, labels.image
    pods = f'{ns}="{workload.namespace}", {pod}=~"{pattern}"'
    cadvisor = f'{{{pods}, {container}!="", {container}!="POD"}}'
    by_image, by = f"{pod}, {container}, {image}", f"{pod}, {container}"
    hours = policy.window_hours
    usage_memory, usage_cpu = hours.memory, hours.cpu
    if workload.pending:  # a request is being sized: the earlier revisions' usage over the requests' window
        usage_memory, usage_cpu = max(usage_memory, hours.requests), max(usage_cpu, hours.requests)

    def q(name: str, promql: str, window_hours: float, *, usage: bool = False) -> Planned:
        window = window_hours * 3600
        step = step_for(window, policy)
        return Planned(name=name, promql=promql.replace("$STEP", f"{step:.0f}s"), start=end - window, end=end,
                       step=step, cadvisor=usage)

    def state(metric: str, resource: str) -> str:
        return f'max by ({by}) ({metric}{{{pods}, resource="{resource}"}})'

    return [
        q(m.MEMORY, f"max by ({by_image}) (max_over_time(container_memory_working_set_bytes{cadvisor}[$STEP]))",
          usage_memory, usage=True),
        q(m.CPU_USAGE, f"sum by ({by_image}) (rate(container_cpu_usage_seconds_total{cadvisor}[{RATE_RANGE}]))",
          usage_cpu, usage=True),
        q(m.CPU_THROTTLED, f"sum by ({by}) (rate(container_cpu_cfs_throttled_periods_total{cadvisor}[{RATE_RANGE}]))"
                           f" / sum by ({by}) (rate(container_cpu_cfs_periods_total{cadvisor}[{RATE_RANGE}]))",
          usage_cpu),
        q(m.MEMORY_LIMIT, state("kube_pod_container_resource_limits", "memory"), usage_memory),
        q(m.CPU_LIMIT, state("kube_pod_container_resource_limits", "cpu"), usage_cpu),
        q(m.RESTARTS, f"max by ({by}) (kube_pod_container_status_restarts_total{{{pods}}})", usage_memory),
        q(m.MEMORY_REQUEST, state("kube_pod_container_resource_requests", "memory"), hours.requests),
        q(m.CPU_REQUEST, state("kube_pod_container_resource_requests", "cpu"), hours.requests),
    ]


def read(reader: MetricsReader | None, workload: Workload, *, end: float, policy: MetricsPolicy) -> Metrics:
    """What Prometheus says about the workload's pods over the window before ``end`` (the alert's startsAt)."""
    if reader is None:
        return Metrics(status="not_configured", reason=NOT_SET)
    if not policy.enabled:
        return Metrics(status="not_configured", reason="metrics are disabled by policy (metrics.enabled)",
                       source=reader.source)
    if pod_pattern(workload.kind, workload.name) is None:
        return Metrics(status="no_data", reason=f"a {workload.kind} has no pods of its own to read",
                       source=reader.source)
    planned = plan(workload, end=end, policy=policy)
    queries: list[Query] = []
    answers: list[tuple[Planned, list[RawSeries]]] = []
    error = _run(reader, planned, queries, answers, policy=policy)
    series = _series(workload, answers, policy=policy)

    def result(status: m.Status, reason: str = "") -> Metrics:
        return Metrics(status=status, reason=reason, source=reader.source, start=min(p.start for p in planned),
                       end=end, queries=queries, series=series)

    if error is not None:
        return result("unavailable", error)
    usage = {p.name for p in planned if p.cadvisor}
    if not any(s.name in usage and s.points for s in series):
        hours = max(p.end - p.start for p in planned if p.cadvisor) / 3600
        return result("no_data", f"Prometheus has no working set or CPU usage of the pods of {workload.kind} "
                                 f"{workload.name} in namespace {workload.namespace} over the {hours:g} h before "
                                 "the alert")
    return result("ok")


def _run(reader: MetricsReader, planned: list[Planned], queries: list[Query],
         answers: list[tuple[Planned, list[RawSeries]]], *, policy: MetricsPolicy) -> str | None:
    """Send the queries within the metrics budget; the first failure stops them: its one-line reason."""
    outer = deadlines.current()
    allowed = policy.budget_seconds
    if outer is not None:
        allowed = min(allowed, max(outer.remaining() * SHARE_OF_JOB_BUDGET, deadlines.MIN_CALL_SECONDS))
    # A deadline of their own: each request's timeouts are bounded by what is left of ``allowed``, and the
    # results still reach the job's health observer.
    budget = deadlines.Deadline(allowed, attempts=1, observer=outer.observer if outer is not None else None)
    started = time.monotonic()
    current: Planned | None = None
    try:
        with deadlines.running(budget):
            for current in planned:
                deadlines.check()  # the budget spent between two answers: the remaining queries are not sent
                queries.append(Query(name=current.name, promql=current.promql, start=current.start,
                                     end=current.end, step=current.step))
                answers.append((current, reader.query_range(current.promql, start=current.start, end=current.end,
                                                            step=current.step)))
    except (deadlines.DependencyTimeout, deadlines.BudgetExceeded):  # the budget's own check, between calls
        if not budget.expired():
            raise
        return _out_of_time(allowed, current, started)
    except TemporaryError as err:
        if err.dependency != dependencies.PROMETHEUS:
            raise
        return err.message  # the adapter reported it (timeouts bounded by the budget included)
    return None


def _out_of_time(allowed: float, current: Planned | None, started: float) -> str:
    """The queries' budget ran out: reported to the job's observer as a Prometheus timeout."""
    where = f"; stopped before {current.name}" if current is not None else ""
    log.warning("prometheus queries out of time", extra={"seconds": round(time.monotonic() - started, 3)})
    err = TemporaryError(f"the queries took longer than {deadlines.shown(allowed)} s (metrics.budget_seconds){where}",
                         dependency=dependencies.PROMETHEUS,
                         kind=dependencies.TIMEOUT, code="prometheus_unavailable")
    deadlines.failed(err, spend_attempt=False)
    return err.message


def _series(workload: Workload, answers: list[tuple[Planned, list[RawSeries]]], *,
            policy: MetricsPolicy) -> list[Series]:
    labels = policy.labels
    images: dict[tuple[str, str], str] = {}
    raw: list[tuple[str, str, str, str | None, list[tuple[float, float]]]] = []
    for planned, found in answers:
        for s in found:
            pod, container = s.labels.get(labels.pod, ""), s.labels.get(labels.container, "")
            if not pod or not container or container == "POD":
                continue  # never a pod cgroup or a pause container, whatever a query returned
            image = s.labels.get(labels.image) or None
            if image:
                images.setdefault((pod, container), image)
            points = [(t, v) for t, v in s.points if math.isfinite(v)]
            raw.append((planned.name, pod, container, image, points))
    return [Series(name=name, pod=pod, container=container, image=image or images.get((pod, container)),
                   revision=revision_of(workload.kind, workload.name, pod), points=points)
            for name, pod, container, image, points in raw]
