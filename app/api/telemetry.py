"""The Prometheus metrics one app exposes, on its own registry (tests build many apps in one process)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.dependencies import DependencyHealth

# Webhook handling is a parse and one fsync'd insert: buckets from 1 ms to a few seconds (a locked database).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Counters, histogram and gauges of the intake; ``registry`` is what /metrics renders.

    With ``health``, each scrape also reads the dependency health registry (app.dependencies):
    ``autofix_dependency_errors_total{dependency,kind}`` and ``autofix_dependency_up{dependency}``."""

    def __init__(self, *, health: DependencyHealth | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if health is not None:
            self.registry.register(DependencyCollector(health))
        self.alerts_received = Counter(
            "autofix_alerts_received", "Alerts received in webhook payloads, by alert status.",
            ["status"], registry=self.registry,
        )
        self.duplicates = Counter(
            "autofix_alert_duplicates", "Alerts already stored (repeated deliveries), not queued again.",
            registry=self.registry,
        )
        self.webhook_requests = Counter(
            "autofix_webhook_requests", "Webhook requests by HTTP status code.", ["code"], registry=self.registry,
        )
        self.jobs_finished = Counter(
            "autofix_jobs_finished", "Jobs handled by the workers, by how they ended (done:<outcome>, retry, failed).",
            ["outcome"], registry=self.registry,
        )
        self.webhook_latency = Histogram(
            "autofix_webhook_duration_seconds", "Time to answer a webhook request.",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.jobs = Gauge("autofix_jobs", "Jobs in the store by state.", ["state"], registry=self.registry)
        self.queue_depth = Gauge(
            "autofix_queue_depth", "Jobs waiting or running (queued + running).", registry=self.registry,
        )
        self.export_backlog = Gauge(
            "autofix_export_backlog", "Run records in the outbox by state: pending (not in MLflow yet), linking "
            "(exported, the PR link not written yet), failed (refused by MLflow, kept).", ["state"],
            registry=self.registry,
        )
        self.export_oldest = Gauge(
            "autofix_export_oldest_pending_seconds", "Age of the oldest run record not in MLflow yet (0: none).",
            registry=self.registry,
        )

    def job_finished(self, label: str) -> None:
        self.jobs_finished.labels(outcome=label).inc()

    def observe_store(self, counts: dict[str, int]) -> None:
        for state, n in counts.items():
            self.jobs.labels(state=state).set(n)
        self.queue_depth.set(counts.get("queued", 0) + counts.get("running", 0))

    def observe_backlog(self, backlog: dict[str, float]) -> None:
        for state in ("pending", "linking", "failed"):
            self.export_backlog.labels(state=state).set(backlog.get(state, 0))
        self.export_oldest.set(backlog.get("oldest_seconds", 0.0))


class DependencyCollector(Collector):
    """Reads the health registry at scrape time: its counts are the counter, its states the gauge."""

    def __init__(self, health: DependencyHealth) -> None:
        self._health = health

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        errors, up = self._families()
        for state in self._health.snapshot():
            for kind, count in sorted(state.errors.items()):
                errors.add_metric([state.name, kind], count)
            up.add_metric([state.name], 0.0 if state.state == "down" else 1.0)
        yield errors
        yield up

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, GaugeMetricFamily]:
        errors = CounterMetricFamily(
            "autofix_dependency_errors",
            "Failed calls to a dependency (cluster, git, forge, llm, mlflow, prometheus) by how they failed "
            "(timeout, refused, unreachable, http_5xx, http_4xx, rate_limited, invalid_response, budget).",
            labels=["dependency", "kind"])
        up = GaugeMetricFamily(
            "autofix_dependency_up",
            "0 while a dependency is down (its last call did not reach it or got a 5xx), else 1 (up or not "
            "called yet).", labels=["dependency"])
        return errors, up
