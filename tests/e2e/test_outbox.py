"""MLflow down while alerts arrive: the PRs open anyway, the run records wait in the job store's outbox, and once
a real `mlflow server` is back every run appears in it exactly once, with its params, metrics and artifacts,
and the PR body gets the link to its run. Also across a SIGKILL of the service between the PR and the export.

Real components: `autofix serve` as a subprocess (the real pipeline, PyGithub, the kubernetes client, git), the
GitHub and Kubernetes API fakes on loopback, the `mlflow server` binary on a loopback port.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from app.adapters.store import JobStore
from app.demo import seed_bare_repo
from tests.conftest import EXAMPLES, ROOT
from tests.edges.test_api import free_port
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake
from tests.serve import answers, serving, wait_for

pytestmark = pytest.mark.e2e

GH_TOKEN = "ghs_outbox_token_0123456789abcdefghij"
WEBHOOK_TOKEN = "outbox-webhook-token-7c1d"
DEMO = EXAMPLES / "demo"
HEADERS = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


@contextmanager
def mlflow_server(root: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """The real tracking server on loopback, its runs in a sqlite file that outlives it (a restart)."""
    log = (root / "mlflow-server.log").open("ab")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--default-artifact-root", str(root / "server-artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=log, stderr=log, start_new_session=True)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/health"), "mlflow server to start")
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def post_and_wait(base: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    accepted = httpx.post(f"{base}/webhooks/alertmanager", json=payload, headers=HEADERS, timeout=10)
    assert accepted.status_code == 202, accepted.text
    jobs: list[dict[str, Any]] = []
    for job_id in accepted.json()["jobs"]:
        def done(job_id: int = job_id) -> bool:
            job = httpx.get(f"{base}/jobs/{job_id}", headers=HEADERS, timeout=10).json()
            if job["state"] in ("done", "failed"):
                jobs.append(job)
                return True
            return False
        wait_for(done, f"job {job_id}")
    return jobs


def backlog(data: Path) -> dict[str, float]:
    store = JobStore(data / "jobs.sqlite3")
    try:
        return store.backlog()
    finally:
        store.close()


def tried_and_released(data: Path) -> int:
    """Records the exporter tried and let go of (the SIGKILL must not land on a lease: that waits it out)."""
    with sqlite3.connect(data / "jobs.sqlite3") as conn:
        row = conn.execute("SELECT COUNT(*) FROM outbox WHERE attempts >= 1 AND lease_owner IS NULL").fetchone()
    return int(row[0])


def runs_by_record(uri: str) -> dict[str, Any]:
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=100)
    by_key: dict[str, Any] = {}
    for run in runs:
        key = run.data.tags["autofix_record"]
        assert key not in by_key, f"record {key} exported twice"
        by_key[key] = run
    return by_key


@pytest.mark.timeout(400)
def test_prs_open_while_mlflow_is_down_and_each_run_lands_once_when_it_is_back(tmp_path: Path) -> None:
    bare = tmp_path / "gitops.git"
    seed_bare_repo(DEMO / "repo", bare)
    mlflow_port, data = free_port(), tmp_path / "data"
    uri = f"http://127.0.0.1:{mlflow_port}"
    payload = json.loads((DEMO / "alert.json").read_text())
    with FakeGitHub("acme/gitops", token=GH_TOKEN) as gh, KubeApiFake.from_snapshot(DEMO / "cluster.json") as kube:
        env = {**os.environ, "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
               "AUTOFIX_GIT_URL": str(bare), "AUTOFIX_GITHUB_REPO": "acme/gitops", "GITHUB_TOKEN": GH_TOKEN,
               "AUTOFIX_GITHUB_API_URL": gh.api_url, "AUTOFIX_GITHUB_WRITE_SPACING": "0",
               "AUTOFIX_DATA_DIR": str(data), "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "MLFLOW_TRACKING_URI": uri}

        # 1. MLflow is down: the PR opens, both records wait; then the service is SIGKILLed before any export.
        with serving(env, out=tmp_path / "serve-1.log", verbose=True) as first:
            base = first.base
            jobs = sorted(post_and_wait(base, payload), key=lambda j: j["result"]["outcome"] != "pr_opened")
            assert [j["result"]["outcome"] for j in jobs] == ["pr_opened", "duplicate"], jobs
            assert backlog(data)["pending"] == 2
            wait_for(lambda: tried_and_released(data) == 2, "the exporter to have tried each record")
            # What operators see meanwhile: ready (PRs still open) but degraded, naming MLflow; the backlog.
            ready = httpx.get(f"{base}/readyz", timeout=10)
            assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
            assert ready.json()["dependencies"]["mlflow"]["state"] == "down", ready.text
            scraped = httpx.get(f"{base}/metrics", timeout=10).text
            assert 'autofix_export_backlog{state="pending"} 2.0' in scraped
            assert 'autofix_dependency_errors_total{dependency="mlflow",kind="refused"}' in scraped
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
        [pr] = gh.pulls.values()
        assert "autofix_record=" in pr["body"], "the PR names the record it waits for"

        # 2. MLflow is back, the service starts again: the records left are exported, once, and the PR linked.
        with mlflow_server(tmp_path, mlflow_port), serving(env, out=tmp_path / "serve-2.log", verbose=True) as second:
            base = second.base
            wait_for(lambda: backlog(data)["pending"] + backlog(data)["linking"] == 0, "the outbox to empty")
            runs = runs_by_record(uri)
            assert sorted(runs) == sorted(j["result"]["record_id"] for j in jobs)
            opened = runs[jobs[0]["result"]["record_id"]]
            assert opened.data.tags["outcome"] == "pr_opened" and opened.data.params["detector"] == "oom"
            assert opened.data.metrics["risk"] == jobs[0]["result"]["risk"]
            assert opened.info.status == "FINISHED"
            artifacts = {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(opened.info.run_id)}
            assert {"evidence.json", "pr_body.md", "patch.diff", "outcome.json"} <= artifacts
            body = gh.pulls[pr["number"]]["body"]
            link = f"{uri}/#/experiments/{opened.info.experiment_id}/runs/{opened.info.run_id}"
            assert f"recorded in MLflow: {link}" in body and "autofix_record=" not in body
            explained = subprocess.run([sys.executable, "-m", "app.cli", "explain", jobs[0]["fingerprint"]], env=env,
                                       cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert f"  record: {jobs[0]['result']['record_id']}: in MLflow, {link}" in explained.stdout, explained

        # 3. MLflow stops while the service runs: the next alert is decided at once, its record waits, then lands.
        again = {**payload, "alerts": [{**payload["alerts"][0], "startsAt": "2026-12-01T10:00:00Z"}]}
        with serving(env, out=tmp_path / "serve-3.log", verbose=True) as third:
            base = third.base
            [job] = post_and_wait(base, again)
            assert job["result"]["outcome"] == "duplicate"
            assert backlog(data)["pending"] == 1
            with mlflow_server(tmp_path, mlflow_port):
                wait_for(lambda: backlog(data)["pending"] == 0, "the record to reach the restarted server")
                runs = runs_by_record(uri)
        assert len(runs) == 3 and job["result"]["record_id"] in runs
