"""Evidence.metrics: the evidence stage reads the workload's series from a real Prometheus (tests/fakes/prometheus.py)
over the window that ends at the alert's startsAt, for its pods of every revision, without the pod cgroup and
pause series, and says why when there is nothing to size from (not configured, unavailable, no data).

The demo's checkout (examples/demo: OOMKilled at 2026-11-23T15:15:29Z) ran revision 5b6c8d9f47 until a day
before the alert, then 7d9f8b6c5 (three pods, the cluster's); next to it Prometheus holds checkout-redis (a
sibling Deployment whose name extends checkout's), a pod of the same name in namespace staging, and data past the
alert (the working set jumps to 999 MiB half an hour later) that the window must not reach.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app import deadlines
from app.adapters.prometheus import PrometheusReader
from app.models import metrics as m
from app.models.incident import WorkloadRef
from app.policies import MetricsPolicy, Policy
from app.stages import evidence
from app.stages import metrics as reading
from tests.fakes.health import HealthRecorder
from tests.fakes.prometheus import (
    DAY,
    HOUR,
    MINUTE,
    Container,
    MiB,
    PrometheusServer,
    Scenario,
    free_port,
    step_at,
)
from tests.fakes.silent import SilentServer
from tests.stages.world import World

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]  # a real prometheus over generated blocks

CHECKOUT = WorkloadRef(kind="Deployment", namespace="shop", name="checkout")
OLD, NEW = "5b6c8d9f47", "7d9f8b6c5"
LIMITS = {"memory": "512Mi", "cpu": "500m"}
REQUESTS = {"memory": "256Mi", "cpu": "100m"}


def demo_scenario(alert_at: float) -> Scenario:
    s = Scenario(namespace="shop", alert_at=alert_at)
    old = Container("checkout", image="ghcr.io/acme/checkout:1.4.1", memory=200 * MiB, cpu=0.1, limits=LIMITS,
                    requests=REQUESTS)
    new = Container("checkout", image="ghcr.io/acme/checkout:1.4.2", memory=step_at(DAY + 30 * MINUTE, 300 * MiB,
                    999 * MiB), cpu=0.2, throttled=0.25, limits=LIMITS, requests=REQUESTS)
    s.replica("checkout", OLD, suffix="q7x2m", start=-5 * DAY, end=-1 * DAY, containers=[old])
    for suffix in ("abcde", "fghij", "x2v7q"):
        s.replica("checkout", NEW, suffix=suffix, start=-1 * DAY, containers=[new])
    s.replica("checkout-redis", "6b8f9d7c4", suffix="zt5kw", start=-2 * DAY, containers=[
        Container("redis", image="redis:7.2", memory=50 * MiB, limits={"memory": "128Mi"})])
    s.pod("checkout-7d9f8b6c5-abcde", namespace="staging", start=-2 * DAY, containers=[
        Container("checkout", image="ghcr.io/acme/checkout:1.5.0-rc1", memory=100 * MiB)])
    s.pod("redis-0", start=-2 * DAY, containers=[Container("redis", image="redis:7.2", memory=60 * MiB)])
    s.pod("redis-1", start=-2 * DAY, containers=[Container("redis", image="redis:7.2", memory=70 * MiB)])
    return s


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Scenario, PrometheusServer]]:
    from tests.conftest import EXAMPLES
    from tests.stages.world import incidents

    alert_at = incidents(EXAMPLES / "demo")[0].starts_at.timestamp()
    s = demo_scenario(alert_at)
    with PrometheusServer(s, tmp_path_factory.mktemp("prometheus")) as server:
        yield s, server


def collect(world: World, url: str, *, policy: Policy | None = None) -> evidence.Gathered:
    return evidence.collect(cluster=world.cluster, workload=CHECKOUT, incident=world.incident(),
                            metrics=PrometheusReader(url), policy=policy or world.policy)


def test_the_window_ends_at_the_alerts_starts_at_and_looks_back_the_policys_hours(
        world: World, prometheus: tuple[Scenario, PrometheusServer]) -> None:
    s, server = prometheus
    met = collect(world, server.url).evidence.metrics
    assert met is not None and met.status == "ok"
    end = world.incident().starts_at.timestamp()
    assert (met.end, met.start, met.source) == (end, end - 168 * HOUR, server.url)
    spans = {q.name: ((q.end - q.start) / HOUR, q.step) for q in met.queries}
    assert spans == {m.MEMORY: (72, 300), m.CPU_USAGE: (72, 300), m.CPU_THROTTLED: (72, 300),
                     m.MEMORY_LIMIT: (72, 300), m.CPU_LIMIT: (72, 300), m.RESTARTS: (72, 300),
                     m.MEMORY_REQUEST: (168, 660), m.CPU_REQUEST: (168, 660)}
    points = [p for series in met.series for p in series.points]
    assert max(t for t, _ in points) <= end
    assert min(t for t, _ in points) >= end - 168 * HOUR
    assert max(v for series in met.of(m.MEMORY) for _, v in series.points) == 300 * MiB, \
        "the 999 MiB half an hour after the alert is outside the window"


def test_every_revisions_pods_are_read_and_attributed_by_pod_template_hash(
        world: World, prometheus: tuple[Scenario, PrometheusServer]) -> None:
    _, server = prometheus
    met = collect(world, server.url).evidence.metrics
    assert met is not None
    memory = [(s.pod, s.container, s.revision, s.image, max(v for _, v in s.points)) for s in met.of(m.MEMORY)]
    assert memory == [
        (f"checkout-{OLD}-q7x2m", "checkout", OLD, "ghcr.io/acme/checkout:1.4.1", 200 * MiB),
        (f"checkout-{NEW}-abcde", "checkout", NEW, "ghcr.io/acme/checkout:1.4.2", 300 * MiB),
        (f"checkout-{NEW}-fghij", "checkout", NEW, "ghcr.io/acme/checkout:1.4.2", 300 * MiB),
        (f"checkout-{NEW}-x2v7q", "checkout", NEW, "ghcr.io/acme/checkout:1.4.2", 300 * MiB),
    ], "not checkout-redis, not the staging namespace's pod of the same name"
    limits = {(s.pod, s.revision, s.image, s.points[-1][1]) for s in met.of(m.MEMORY_LIMIT)}
    assert (f"checkout-{OLD}-q7x2m", OLD, "ghcr.io/acme/checkout:1.4.1", 512 * MiB) in limits, \
        "kube-state-metrics' series get the image of the cAdvisor series of the same container"
    throttled = {s.revision: max(v for _, v in s.points) for s in met.of(m.CPU_THROTTLED)}
    assert throttled == {OLD: 0.0, NEW: pytest.approx(0.25)}


def test_the_pod_cgroup_and_the_pause_container_are_left_out_by_the_queries_themselves(
        prometheus: tuple[Scenario, PrometheusServer]) -> None:
    s, server = prometheus
    reader = PrometheusReader(server.url)
    planned = {p.name: p for p in reading.plan(reading.Workload(kind="Deployment", namespace="shop", name="checkout"),
                                               end=s.alert_at, policy=MetricsPolicy())}
    for name in (m.MEMORY, m.CPU_USAGE, m.CPU_THROTTLED):
        q = planned[name]
        found = reader.query_range(q.promql, start=q.start, end=q.end, step=q.step)
        assert {r.labels.get("container", "") for r in found} == {"checkout"}, name
    usage = planned[m.CPU_USAGE]
    cores = reader.query_range(usage.promql, start=usage.start, end=usage.end, step=usage.step)
    assert {round(max(v for _, v in r.points), 6) for r in cores} == {0.1, 0.2}, \
        "the container's own usage: not added to its pod's cgroup nor to the pause container's"
    everything = reader.query_range('max by (pod, container) (container_memory_working_set_bytes{namespace="shop", '
                                    'pod="checkout-7d9f8b6c5-abcde"})', start=s.at(-HOUR), end=s.alert_at, step=300)
    assert {r.labels.get("container", "") for r in everything} == {"", "POD", "checkout"}, \
        "Prometheus does hold both: the exclusion is the query's"


def test_a_statefulsets_pods_are_read_by_ordinal_without_a_revision(
        prometheus: tuple[Scenario, PrometheusServer]) -> None:
    s, server = prometheus
    met = reading.read(PrometheusReader(server.url), reading.Workload(kind="StatefulSet", namespace="shop",
                                                                      name="redis"),
                       end=s.alert_at, policy=MetricsPolicy())
    assert [(x.pod, x.revision, x.points[-1][1]) for x in met.of(m.MEMORY)] == [
        ("redis-0", None, 60 * MiB), ("redis-1", None, 70 * MiB)], "not checkout-redis' pod"


def test_nothing_recorded_for_the_workload_is_no_data_and_the_pr_says_sized_without_metrics(
        prometheus: tuple[Scenario, PrometheusServer]) -> None:
    s, server = prometheus
    met = reading.read(PrometheusReader(server.url), reading.Workload(kind="Deployment", namespace="shop",
                                                                      name="payments"),
                       end=s.alert_at, policy=MetricsPolicy())
    assert (met.status, met.usable, met.series) == ("no_data", False, [])
    assert len(met.queries) == 8, "every query was asked"
    assert met.said() == ("sized without metrics: Prometheus has no working set or CPU usage of the pods of "
                          "Deployment payments in namespace shop over the 72 h before the alert")


def test_labels_named_otherwise_by_the_install_are_asked_by_the_policys_names(
        prometheus: tuple[Scenario, PrometheusServer]) -> None:
    s, server = prometheus
    relabelled = MetricsPolicy.model_validate({"labels": {"pod": "pod_name", "container": "container_name"}})
    met = reading.read(PrometheusReader(server.url), reading.Workload(kind="Deployment", namespace="shop",
                                                                      name="checkout"),
                       end=s.alert_at, policy=relabelled)
    assert met.status == "no_data", "these series carry pod and container: nothing under the other names"
    assert 'pod_name=~"checkout-' in met.queries[0].promql and 'container_name!="POD"' in met.queries[0].promql


def test_prometheus_down_is_unavailable_reported_and_the_stage_goes_on(world: World) -> None:
    observer = HealthRecorder()
    with deadlines.running(deadlines.Deadline(60, observer=observer)):
        out = collect(world, f"http://127.0.0.1:{free_port()}")
    met = out.evidence.metrics
    assert met is not None and (met.status, met.reason) == (
        "unavailable", "prometheus: connection refused (GET /api/v1/query_range)")
    assert len(met.queries) == 1, "the first failure stops the queries"
    assert out.decision == ("3 pod(s), 13 event(s), 3 log(s), metrics unavailable: prometheus: connection refused "
                            "(GET /api/v1/query_range)")
    assert [c[:3] for c in observer.calls] == [("error", "prometheus", "refused")]
    assert met.said() == "sized without metrics: prometheus: connection refused (GET /api/v1/query_range)"


def test_a_silent_prometheus_costs_the_metrics_budget_once(world: World) -> None:
    observer = HealthRecorder()
    policy = world.policy.model_copy(update={"metrics": MetricsPolicy(budget_seconds=1)})
    with SilentServer() as silent, deadlines.running(deadlines.Deadline(60, observer=observer)) as job:
        out = collect(world, silent.url, policy=policy)
        accepted = silent.accepted
    met = out.evidence.metrics
    assert met is not None and (met.status, met.reason) == (
        "unavailable", "prometheus: no answer within 1 s (GET /api/v1/query_range)")
    assert accepted == 1 and [c[:3] for c in observer.calls] == [("error", "prometheus", "timeout")]
    assert not job.expired() and job.failures == {}, "the job's own budget and retry budget are untouched"

