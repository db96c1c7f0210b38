"""A Kubernetes API and a forge that accept connections and never answer: whole runs end within the job budget,
requeued with the dependency named, and after the policy's attempts `failed` with a one-line reason naming it.

Real parts: the pipeline as wired for production (the kubernetes client, PyGithub, git, MLflow sqlite), the job
store and worker code, `autofix serve` in process under uvicorn and `autofix handle` as a subprocess; the
silent dependency is tests/fakes/silent.py on 127.0.0.1, the others the usual loopback fakes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import settings as settings_mod
from app.adapters.store import JobStore
from app.demo import seed_bare_repo
from app.dependencies import DependencyHealth
from app.models.alertmanager import WebhookPayload
from app.settings import Settings
from app.wiring import build_pipeline
from app.worker import run_next
from tests.conftest import EXAMPLES, ROOT
from tests.edges.test_api import serve
from tests.fakes.kube_api import KubeApiFake
from tests.fakes.silent import SilentServer, kubeconfig

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

DEMO = EXAMPLES / "demo"
TOKEN = "ghs_silent_token_0123456789abcdefghij"
BUDGET = 3.0
WAIT = 60.0  # bounds every wait below; none of them is a timing assertion


class Clock:
    """The job store's clock, moved by the test: a retry 'later' without sleeping."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def one_alert() -> bytes:
    payload = json.loads((DEMO / "alert.json").read_text())
    payload["alerts"] = payload["alerts"][:1]
    return json.dumps(payload).encode()


def wait_for(check: Any, what: str) -> Any:
    give_up = time.monotonic() + WAIT
    while not (value := check()):
        assert time.monotonic() < give_up, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    path = tmp_path / "gitops.git"
    seed_bare_repo(DEMO / "repo", path)
    return path


def env_for(settings: Settings) -> dict[str, str]:
    """The same configuration as environment variables, for `autofix handle`."""
    env = {**os.environ, "KUBECONFIG": str(settings.kubeconfig), "AUTOFIX_GIT_URL": settings.git_url,
           "AUTOFIX_FORGE": settings.forge, "AUTOFIX_GITHUB_REPO": settings.github_repo,
           "AUTOFIX_GITHUB_API_URL": settings.github_api_url, "AUTOFIX_DATA_DIR": str(settings.data_dir),
           "MLFLOW_TRACKING_URI": settings.tracking_uri, "AUTOFIX_JOB_BUDGET_SECONDS": f"{BUDGET:g}",
           "AUTOFIX_GITHUB_WRITE_SPACING": "0"}
    if settings.github_token is not None:
        env["GITHUB_TOKEN"] = settings.github_token.get_secret_value()
    return env


@pytest.fixture
def silent_cluster(tmp_path: Path, bare: Path, mlflow_uri: str) -> Iterator[Settings]:
    with SilentServer() as silent:
        yield settings_mod.load(
            AUTOFIX_GIT_URL=str(bare), AUTOFIX_FORGE="local", AUTOFIX_GITHUB_REPO="acme/gitops",
            AUTOFIX_DATA_DIR=tmp_path / "data", MLFLOW_TRACKING_URI=mlflow_uri,
            KUBECONFIG=kubeconfig(tmp_path / "kubeconfig", silent.url), AUTOFIX_WORKERS=1,
            AUTOFIX_LEASE_SECONDS=30, AUTOFIX_JOB_BUDGET_SECONDS=BUDGET)


@pytest.fixture
def silent_forge(tmp_path: Path, bare: Path, mlflow_uri: str) -> Iterator[Settings]:
    with SilentServer() as silent, KubeApiFake.from_snapshot(DEMO / "cluster.json") as kube:
        yield settings_mod.load(
            AUTOFIX_GIT_URL=str(bare), AUTOFIX_GITHUB_REPO="acme/gitops", GITHUB_TOKEN=TOKEN,
            AUTOFIX_GITHUB_API_URL=silent.url, AUTOFIX_DATA_DIR=tmp_path / "data", MLFLOW_TRACKING_URI=mlflow_uri,
            KUBECONFIG=str(kube.write_kubeconfig(tmp_path / "kubeconfig")), AUTOFIX_GITHUB_WRITE_SPACING=0,
            AUTOFIX_WORKERS=1, AUTOFIX_LEASE_SECONDS=30, AUTOFIX_JOB_BUDGET_SECONDS=BUDGET)


def test_silent_cluster_api_serve_requeues_the_job_within_its_budget_and_readyz_names_it(
        silent_cluster: Settings) -> None:
    with serve(silent_cluster, build_pipeline(silent_cluster)) as client:  # type: ignore[arg-type]
        assert client.get("/readyz").status_code == 200
        answer = client.post("/webhooks/alertmanager", content=one_alert(),
                             headers={"Content-Type": "application/json"})
        assert answer.status_code == 202, answer.text
        [job_id] = answer.json()["jobs"]
        job = wait_for(lambda: (j := client.get(f"/jobs/{job_id}").json())["attempts"] == 1
                       and j["state"] == "queued" and j, "the job to be requeued")
        error = job["error"]
        assert error.startswith(("dependency_timeout: cluster: no answer within the job budget of 3 s (GET ",
                                 "cluster_unavailable: cluster: the Kubernetes API did not answer within ")), error
        assert "\n" not in error and "(GET pods/checkout-7d9f8b6c5-fghij in namespace shop" in error, error

        # The held call itself ends at the budget too (no handler left past it); the cluster stays down.
        ready = wait_for(lambda: (r := client.get("/readyz")).json()["checks"]["jobs_within_budget"] and r,
                         "the abandoned handler to end")
        assert ready.status_code == 503, ready.text
        body = ready.json()
        assert body["dependencies"]["cluster"]["state"] == "down"
        assert body["dependencies"]["cluster"]["last_kind"] == "timeout"
        assert body["reason"].startswith("cluster down: cluster: "), body
        metrics = client.get("/metrics").text
        assert 'autofix_dependency_errors_total{dependency="cluster",kind="timeout"}' in metrics
        assert 'autofix_dependency_up{dependency="cluster"} 0.0' in metrics


def test_silent_forge_requeues_each_attempt_within_its_budget_then_fails_naming_the_forge(
        silent_forge: Settings, tmp_path: Path) -> None:
    clock = Clock()
    store = JobStore(tmp_path / "jobs.sqlite3", clock=clock, max_attempts=2)
    health = DependencyHealth()
    pipeline = build_pipeline(silent_forge)
    store.enqueue(WebhookPayload.model_validate_json(one_alert()))
    try:
        first = run_next(store, pipeline, budget_seconds=BUDGET, health=health)
        assert first is not None and first.state == "queued", first
        assert first.error is not None and ": forge: " in first.error, first.error
        assert first.error.startswith(("dependency_timeout: forge: no answer within the job budget of 3 s",
                                       "github_unavailable: forge: GitHub did not answer within ")), first.error
        assert health.state("forge").state == "down" and health.state("forge").errors.get("timeout", 0) >= 1

        clock.now = first.available_at + 1
        last = run_next(store, pipeline, budget_seconds=BUDGET, health=health)
        assert last is not None and last.state == "failed", last
        assert last.error is not None and last.error.startswith("gave up after 2 attempts: "), last.error
        assert ": forge: " in last.error and "\n" not in last.error, last.error
        assert last.result is None
    finally:
        store.close()


def test_silent_forge_autofix_handle_reports_the_forge_within_the_budget(silent_forge: Settings) -> None:
    payload = silent_forge.data_dir.parent / "alert.json"
    payload.write_bytes(one_alert())
    proc = subprocess.run([sys.executable, "-m", "app.cli", "handle", str(payload)], env=env_for(silent_forge),
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 3, proc.stderr  # a result failed (README, exit statuses)
    [result] = json.loads(proc.stdout)["results"]
    assert result["outcome"] == "failed", result
    assert result["reason"].startswith("temporary failure, retry later: forge: "), result
    assert "Traceback" not in proc.stderr


def test_silent_cluster_api_autofix_handle_reports_the_cluster(silent_cluster: Settings) -> None:
    payload = silent_cluster.data_dir.parent / "alert.json"
    payload.write_bytes(one_alert())
    proc = subprocess.run([sys.executable, "-m", "app.cli", "handle", str(payload)], env=env_for(silent_cluster),
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 3, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert (result["outcome"], result["reason"].split(": ")[:2]) == (
        "failed", ["temporary failure, retry later", "cluster"]), result


def test_metrics_answer_while_the_cluster_is_silent(silent_cluster: Settings) -> None:
    """A scrape never waits for a dependency: /metrics reads the registry, it calls nothing."""
    with serve(silent_cluster, build_pipeline(silent_cluster)) as client:  # type: ignore[arg-type]
        response = client.get("/metrics", timeout=httpx.Timeout(5.0))
        assert response.status_code == 200
        assert 'autofix_dependency_up{dependency="cluster"} 1.0' in response.text  # not called yet: not known down
