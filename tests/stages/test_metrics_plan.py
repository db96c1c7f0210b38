"""The metrics part of the evidence stage without a server: which pods' names are asked for, the window and step of
each query, and why there is nothing to size from when Prometheus is not configured or too slow."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import pytest

from app import deadlines
from app.models import metrics as m
from app.models.incident import WorkloadRef
from app.policies import MetricsPolicy
from app.ports import RawSeries
from app.stages import evidence
from app.stages import metrics as reading
from tests.fakes.health import HealthRecorder
from tests.stages.world import World

CHECKOUT = WorkloadRef(kind="Deployment", namespace="shop", name="checkout")


@pytest.mark.parametrize(("kind", "name", "pod", "revision"), [
    ("Deployment", "checkout", "checkout-7d9f8b6c5-x2v7q", "7d9f8b6c5"),
    ("Deployment", "checkout", "checkout-5b6c8d9f47-abcde", "5b6c8d9f47"),  # a hand-written fixture's suffix
    ("Deployment", "checkout", "checkout-redis-6b8f9d7c4-zt5kw", False),  # a sibling whose name extends it
    ("Deployment", "checkout", "checkout-agent-zt5kw", False),  # a DaemonSet's pod: "agent" is no hash
    ("Deployment", "checkout", "checkout-db-0", False),
    ("Deployment", "api.v2", "api.v2-7d9f8b6c5-x2v7q", "7d9f8b6c5"),
    ("Deployment", "api.v2", "apixv2-7d9f8b6c5-x2v7q", False),  # the dot is a dot
    ("StatefulSet", "redis", "redis-0", None),
    ("StatefulSet", "redis", "redis-12", None),
    ("StatefulSet", "redis", "redis-exporter-0", False),
    ("DaemonSet", "node-agent", "node-agent-7xk2p", None),
    ("Job", "db-migrate", "db-migrate-7xk2p", None),
    ("CronJob", "nightly-report", "nightly-report-29401980-7xk2p", None),
    ("CronJob", "nightly-report", "nightly-report-7xk2p", False),
    ("Pod", "debug-shell", "debug-shell", None),
])
def test_pod_names_of_a_workload_and_their_revision(kind: str, name: str, pod: str, revision: str | None | bool) -> None:
    pattern = reading.pod_pattern(kind, name)
    assert pattern is not None
    assert bool(re.fullmatch(pattern, pod)) is (revision is not False)
    if revision is not False:
        assert reading.revision_of(kind, name, pod) == revision


def test_kinds_without_pods_of_their_own_and_names_that_cannot_exist_are_never_asked() -> None:
    assert reading.pod_pattern("PersistentVolumeClaim", "data") is None
    assert reading.pod_pattern("Deployment", 'checkout"}) or vector(1) #') is None


@pytest.mark.parametrize(("hours", "step"), [(72, 300), (168, 660), (1, 60), (24 * 90, 7800)])
def test_the_step_keeps_each_series_under_the_points_target(hours: float, step: float) -> None:
    assert reading.step_for(hours * 3600, MetricsPolicy()) == step
    assert hours * 3600 / step <= 1000


def test_a_pending_workloads_usage_is_read_over_the_requests_window() -> None:
    workload = reading.Workload(kind="Deployment", namespace="shop", name="checkout", pending=True)
    spans = {p.name: (p.end - p.start) / 3600 for p in reading.plan(workload, end=1_800_000_000,
                                                                     policy=MetricsPolicy())}
    assert spans[m.MEMORY] == spans[m.CPU_USAGE] == spans[m.MEMORY_REQUEST] == 168


def test_without_a_url_the_metrics_are_not_configured(world: World) -> None:
    out = evidence.collect(cluster=world.cluster, workload=CHECKOUT, incident=world.incident(), policy=world.policy)
    assert out.evidence.metrics == m.Metrics(status="not_configured", reason="AUTOFIX_PROMETHEUS_URL is not set")
    assert out.decision == "3 pod(s), 13 event(s), 3 log(s), metrics not configured: AUTOFIX_PROMETHEUS_URL is not set"
    assert out.evidence.metrics.said() == "sized without metrics: AUTOFIX_PROMETHEUS_URL is not set"


def test_without_the_pipelines_policy_the_stage_does_not_look(world: World) -> None:
    out = evidence.collect(cluster=world.cluster, workload=CHECKOUT, incident=world.incident())
    assert out.evidence.metrics is None and out.decision == "3 pod(s), 13 event(s), 3 log(s)"


@dataclass
class SlowReader:
    """The MetricsReader port answering nothing after ``seconds`` per query (a Prometheus under load)."""

    seconds: float
    asked: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        return "http://prometheus.monitoring:9090"

    def query_range(self, promql: str, *, start: float, end: float, step: float) -> list[RawSeries]:
        self.asked.append(promql)
        time.sleep(self.seconds)
        return []

    def query(self, promql: str, *, at: float) -> list[RawSeries]:
        raise AssertionError("the evidence stage reads ranges only")


def test_queries_past_the_metrics_budget_are_not_sent_and_the_slowness_is_reported() -> None:
    reader, observer = SlowReader(0.3), HealthRecorder()
    workload = reading.Workload(kind="Deployment", namespace="shop", name="checkout")
    with deadlines.running(deadlines.Deadline(60, observer=observer)) as job:
        met = reading.read(reader, workload, end=1_800_000_000, policy=MetricsPolicy(budget_seconds=0.5))
    assert len(reader.asked) == 2, "0.3 s each: the third would start past 0.5 s"
    assert (met.status, met.reason) == ("unavailable", "prometheus: the queries took longer than 0.5 s "
                                                       "(metrics.budget_seconds); stopped before cpu_throttled_ratio")
    assert [c[:3] for c in observer.calls] == [("error", "prometheus", "timeout")]
    assert not job.expired() and job.failures == {}


def test_a_policy_that_turns_metrics_off_is_not_configured() -> None:
    met = reading.read(SlowReader(0), reading.Workload(kind="Deployment", namespace="shop", name="checkout"),
                       end=1_800_000_000, policy=MetricsPolicy(enabled=False))
    assert (met.status, met.reason) == ("not_configured", "metrics are disabled by policy (metrics.enabled)")
