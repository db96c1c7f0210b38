"""The hourly PR budget holds when several workers race for it: three OOM-killed Deployments, a budget of
two, three workers: exactly two PRs, the third job waits for the budget (retried later, not failed)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app import settings as settings_mod
from app.adapters.store import JobStore
from app.demo import seed_bare_repo
from app.models.alertmanager import WebhookPayload
from app.wiring import build_pipeline
from app.worker import WorkerPool
from benchmarks import alerts as alert_bodies
from benchmarks import storm
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake

pytestmark = pytest.mark.e2e  # real servers, binaries or whole pipeline runs: the slow part

TOKEN = "ghs_budget_token_0123456789abcdefghij"
WORKLOADS = 3


def test_three_workers_cannot_spend_more_than_the_budget(tmp_path: Path, mlflow_uri: str) -> None:
    objects, logs = storm.cluster(WORKLOADS)
    bare = tmp_path / "gitops.git"
    seed_bare_repo(storm.repo(WORKLOADS, tmp_path / "src"), bare)
    policies = storm.policy_dir(tmp_path, budget=2)
    alerts = [storm.alerts_for(objects, i)[0] for i in range(WORKLOADS)]  # one per Deployment
    payload = WebhookPayload.model_validate(alert_bodies.payload(alerts, {"namespace": "shop"}))

    with FakeGitHub("acme/gitops", token=TOKEN) as gh, KubeApiFake(objects, logs=logs) as kube:
        settings = settings_mod.load(
            AUTOFIX_GIT_URL=str(bare), AUTOFIX_GITHUB_REPO="acme/gitops", GITHUB_TOKEN=TOKEN,
            AUTOFIX_GITHUB_API_URL=gh.api_url, AUTOFIX_DATA_DIR=tmp_path / "data", MLFLOW_TRACKING_URI=mlflow_uri,
            KUBECONFIG=str(kube.write_kubeconfig(tmp_path / "kubeconfig")), AUTOFIX_GITHUB_WRITE_SPACING=0,
            AUTOFIX_POLICY_DIR=policies)
        store = JobStore(tmp_path / "jobs.sqlite3")
        jobs = [r.job_id for r in store.enqueue(payload)]
        pool = WorkerPool(store, build_pipeline(settings), workers=WORKLOADS, lease_seconds=60, poll_interval=0.05)
        pool.start()
        try:
            deadline = time.monotonic() + 120
            while not all(_settled(store, j) for j in jobs):
                assert time.monotonic() < deadline, store.counts()
                time.sleep(0.1)
        finally:
            pool.stop(30)
        states = sorted(_state(store, j) for j in jobs)
        store.close()

    assert len(gh.pulls) == 2, states
    assert [s for s, _ in states] == ["done", "done", "queued"], states
    assert "budget" in states[2][1].lower(), states


def _state(store: JobStore, job_id: int) -> tuple[str, str]:
    job = store.get(job_id)
    assert job is not None
    return job.state, job.error or ""


def _settled(store: JobStore, job_id: int) -> bool:
    """Tried once and not running: done, or put back to wait for the budget."""
    job = store.get(job_id)
    return job is not None and job.attempts >= 1 and job.state in ("done", "queued", "failed")
