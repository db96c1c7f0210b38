"""The /metrics page's contract (app/api/telemetry.py): the names the chart's PrometheusRule and dashboard query,
separate labels, no `_created` series, and a page `promtool check metrics` accepts without a word; the job
store's ages behind the oldest-job gauges. The whole service's page is checked in tests/e2e/test_serve_telemetry.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from app.adapters.store import JobStore
from app.api.telemetry import Metrics
from app.dependencies import DependencyHealth
from app.models.alertmanager import WebhookPayload
from app.worker import Finished
from tests.edges.test_api import reference

PROMTOOL = "/usr/bin/promtool"


def populated() -> Metrics:
    metrics = Metrics(health=DependencyHealth(known=["cluster", "forge"]), build={"kustomize": "v5.5.0"})
    metrics.job_finished(Finished(state="done", outcome="pr_opened", cause="oom_killed", seconds=1.5))
    metrics.job_finished(Finished(state="done", outcome="no_fix", cause="app_crash", seconds=0.2))
    metrics.job_finished(Finished(state="retry", seconds=3.0))
    metrics.job_finished(Finished(state="failed", seconds=120.0))
    observe = metrics.stage_observer()
    observe("intake", 0.001)
    observe("publish", 0.8)
    metrics.webhook_rejected.labels(reason="auth").inc()
    metrics.alerts_received.labels(status="firing").inc()
    metrics.webhook_requests.labels(code="202").inc()
    metrics.webhook_latency.observe(0.004)
    metrics.observe_store({"queued": 2, "running": 1, "done": 4, "failed": 1}, {"queued": 12.5, "undecided": 40.0})
    metrics.observe_backlog({"pending": 1, "oldest_seconds": 3.0})
    return metrics


@pytest.mark.timeout(30)
def test_promtool_accepts_the_page_without_a_word() -> None:
    page = generate_latest(populated().registry).decode()
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=page, capture_output=True, text=True, timeout=20)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
    # The same check speaks up about a problem (a counter without _total): its silence above means something.
    broken = "# HELP jobs Jobs.\n# TYPE jobs counter\njobs 1\n"
    complaint = subprocess.run([PROMTOOL, "check", "metrics"], input=broken, capture_output=True, text=True,
                               timeout=20)
    assert complaint.returncode != 0 and 'counter metrics should have "_total" suffix' in complaint.stderr


def test_the_names_and_labels_the_rules_and_dashboard_query() -> None:
    page = generate_latest(populated().registry).decode()
    samples = {line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
               for line in page.splitlines() if line and not line.startswith("#")}
    assert "_created" not in page
    assert samples['autofix_jobs_finished_total{outcome="pr_opened",state="done"}'] == 1
    assert samples['autofix_jobs_finished_total{outcome="no_fix",state="done"}'] == 1
    assert samples['autofix_jobs_finished_total{outcome="",state="retry"}'] == 1
    assert samples['autofix_jobs_finished_total{outcome="",state="failed"}'] == 1
    assert samples['autofix_pull_requests_total{cause="oom_killed",outcome="pr_opened"}'] == 1
    assert not any(s.startswith('autofix_pull_requests_total{cause="app_crash"') for s in samples), "no_fix is no PR"
    assert samples['autofix_stage_duration_seconds_count{stage="publish"}'] == 1
    assert samples['autofix_stage_duration_seconds_bucket{le="1.0",stage="publish"}'] == 1
    assert samples['autofix_webhook_rejected_total{reason="auth"}'] == 1
    assert samples["autofix_jobs_oldest_queued_seconds"] == 12.5
    assert samples["autofix_jobs_oldest_undecided_seconds"] == 40.0
    assert samples['autofix_jobs{state="queued"}'] == 2
    assert samples['autofix_dependency_up{dependency="forge"}'] == 1
    [build] = [s for s in samples if s.startswith("autofix_build_info{")]
    assert 'kustomize="v5.5.0"' in build and 'helm="unknown"' in build and 'version="0.1.0"' in build
    assert samples[build] == 1
    for family in ("process_resident_memory_bytes", "process_cpu_seconds_total", "python_gc_collections_total",
                   "python_info"):
        assert any(s.split("{")[0] == family for s in samples), family


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_ages_of_the_oldest_queued_and_undecided_jobs(tmp_path: Path) -> None:
    clock = Clock()
    store = JobStore(tmp_path / "jobs.sqlite3", clock=clock)
    try:
        assert store.ages() == {"queued": 0.0, "undecided": 0.0}
        [first, _] = store.enqueue(WebhookPayload.model_validate_json(reference()))
        clock.now += 30
        assert store.ages() == {"queued": 30.0, "undecided": 30.0}
        running = store.lease("w1", ttl=60)
        assert running is not None and running.id == first.job_id
        clock.now += 10
        # The other job still waits since the alert arrived; the running one is undecided as long.
        assert store.ages() == {"queued": 40.0, "undecided": 40.0}
        assert store.retry(running.id, "w1", delay=100.0, error="cluster_unavailable: cluster: refused")
        other = store.lease("w2", ttl=60)
        assert other is not None
        clock.now += 5
        # In its backoff the first job waits for no worker: not queued-ready, still undecided.
        assert store.ages() == {"queued": 0.0, "undecided": 45.0}
        assert store.complete(other.id, "w2", {"outcome": "no_fix"})
        clock.now += 100
        assert store.ages() == {"queued": 5.0, "undecided": 145.0}
    finally:
        store.close()
