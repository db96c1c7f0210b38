"""The Prometheus metrics one app exposes, on its own registry (tests build many apps in one process).

The names are a contract: the chart's PrometheusRule and Grafana dashboard query them (README, Operations).
Counters are exposed with ``_total`` and without ``_created`` series (disabled for the whole process below: a
second series per counter that no rule reads, and that `promtool check metrics` flags on some versions)."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Mapping

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from app.dependencies import DependencyHealth
from app.worker import Finished

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Webhook handling is a parse and one fsync'd insert: buckets from 1 ms to a few seconds (a locked database).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A stage is a rule over a snapshot (ms) or a clone, a render, a forge call (seconds, up to the job budget).
STAGE_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
PR_OUTCOMES = ("pr_opened", "pr_updated")
BUILD_LABELS = ("version", "python_version", "kustomize", "helm")
UNKNOWN = "unknown"


class Metrics:
    """Counters, histogram and gauges of the intake; ``registry`` is what /metrics renders.

    With ``health``, each scrape also reads the dependency health registry (app.dependencies):
    ``autofix_dependency_errors_total{dependency,kind}`` and ``autofix_dependency_up{dependency}``."""

    def __init__(self, *, health: DependencyHealth | None = None, build: Mapping[str, str] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if health is not None:
            self.registry.register(DependencyCollector(health))
        # The process's own: memory, CPU, open files (Linux), the interpreter, garbage collections.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        build = dict(build or {})
        self.build_info = Gauge(
            "autofix_build_info", "Always 1: the running version, its Python and the renderers it found "
            "(kustomize, helm; unknown when not found).", list(BUILD_LABELS), registry=self.registry,
        )
        self.build_info.labels(**{name: build.get(name) or _default_build(name) for name in BUILD_LABELS}).set(1)
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
            "autofix_jobs_finished", "Job attempts the workers ended, by the job's state after it (done, retry, "
            "failed, lease_lost) and, for done, the outcome (pr_opened, pr_updated, duplicate, no_fix, skipped, "
            "failed; empty otherwise).", ["state", "outcome"], registry=self.registry,
        )
        self.pull_requests = Counter(
            "autofix_pull_requests", "Pull requests opened or updated, by cause and outcome (pr_opened, pr_updated).",
            ["cause", "outcome"], registry=self.registry,
        )
        self.stage_duration = Histogram(
            "autofix_stage_duration_seconds", "Time each pipeline stage took (a stage that failed included).",
            ["stage"], buckets=STAGE_BUCKETS, registry=self.registry,
        )
        self.oldest_queued = Gauge(
            "autofix_jobs_oldest_queued_seconds", "How long the oldest job ready to run has waited for a worker "
            "(a job waiting out its retry backoff is not ready; 0: none).", registry=self.registry,
        )
        self.oldest_undecided = Gauge(
            "autofix_jobs_oldest_undecided_seconds", "Age of the oldest job not decided yet (queued, backoff "
            "included, or running), from its alert's arrival (0: none).", registry=self.registry,
        )
        self.webhook_rejected = Counter(
            "autofix_webhook_rejected", "Webhook requests refused, by reason (auth, payload, size, incomplete, "
            "timeout, method, rate, other): each also logs a WARNING line \"webhook rejected\".", ["reason"],
            registry=self.registry,
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

    def job_finished(self, finished: Finished) -> None:
        """A worker's observer (app.worker.OutcomeObserver): one count per attempt ended, one per PR."""
        self.jobs_finished.labels(state=finished.state, outcome=finished.outcome).inc()
        if finished.outcome in PR_OUTCOMES:
            self.pull_requests.labels(cause=finished.cause or UNKNOWN, outcome=finished.outcome).inc()

    def stage_observer(self) -> Callable[[str, float], None]:
        """What the pipeline calls after each stage (app.pipeline.StageObserver): it knows no Prometheus."""
        return lambda stage, seconds: self.stage_duration.labels(stage=stage).observe(seconds)

    def observe_store(self, counts: dict[str, int], ages: Mapping[str, float] | None = None) -> None:
        for state, n in counts.items():
            self.jobs.labels(state=state).set(n)
        self.queue_depth.set(counts.get("queued", 0) + counts.get("running", 0))
        if ages is not None:
            self.oldest_queued.set(ages.get("queued", 0.0))
            self.oldest_undecided.set(ages.get("undecided", 0.0))

    def observe_backlog(self, backlog: dict[str, float]) -> None:
        for state in ("pending", "linking", "failed"):
            self.export_backlog.labels(state=state).set(backlog.get(state, 0))
        self.export_oldest.set(backlog.get("oldest_seconds", 0.0))


def _default_build(name: str) -> str:
    if name == "version":
        from importlib import metadata

        try:
            return metadata.version("gitops-autofix")
        except metadata.PackageNotFoundError:  # run from a checkout that was never installed
            return UNKNOWN
    if name == "python_version":
        return platform.python_version()
    return UNKNOWN


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
