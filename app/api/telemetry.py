"""The Prometheus metrics one app exposes, on its own registry (tests build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Webhook handling is a parse and one fsync'd insert: buckets from 1 ms to a few seconds (a locked database).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Counters, histogram and gauges of the intake; ``registry`` is what /metrics renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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

    def job_finished(self, label: str) -> None:
        self.jobs_finished.labels(outcome=label).inc()

    def observe_store(self, counts: dict[str, int]) -> None:
        for state, n in counts.items():
            self.jobs.labels(state=state).set(n)
        self.queue_depth.set(counts.get("queued", 0) + counts.get("running", 0))
