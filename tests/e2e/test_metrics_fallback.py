"""`autofix handle` with AUTOFIX_PROMETHEUS_URL when the metrics cannot size the fix: the demo's checkout
(OOMKilled at its 512Mi limit) is raised by today's step, and the PR and the run record say why it was sized
without metrics. Real components: the CLI in a subprocess, the kubernetes client against the loopback API server,
git, PyGithub against the GitHub fake, MLflow's sqlite store, and the real prometheus over generated series
(tests/fakes/prometheus.py) or a port nothing listens on.

- Prometheus down: the PR opens as without metrics and says "Sized without metrics: prometheus: connection
  refused ..."; the job is not failed, not retried.
- A query that returns nothing (Prometheus holds other workloads only): the same, saying what it has no data of.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.demo import seed_bare_repo
from tests.conftest import EXAMPLES, ROOT, mlflow_run
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake
from tests.fakes.prometheus import DAY, Container, MiB, PrometheusServer, Scenario, free_port
from tests.stages.world import incidents

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TOKEN = "ghs_test_token_0123456789abcdefghij"
DEMO = EXAMPLES / "demo"
RAISED = ['-              memory: "512Mi"', '+              memory: "768Mi"']


def handle(tmp_path: Path, mlflow_uri: str, gh: FakeGitHub, kube: KubeApiFake, *, prometheus: str) -> dict[str, Any]:
    bare = tmp_path / "gitops.git"
    seed_bare_repo(DEMO / "repo", bare)
    env = {**os.environ, "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
           "AUTOFIX_GIT_URL": str(bare), "AUTOFIX_GITHUB_REPO": "acme/gitops", "GITHUB_TOKEN": TOKEN,
           "AUTOFIX_GITHUB_API_URL": gh.api_url, "AUTOFIX_GITHUB_WRITE_SPACING": "0",
           "AUTOFIX_DATA_DIR": str(tmp_path / "data"), "MLFLOW_TRACKING_URI": mlflow_uri,
           "AUTOFIX_PROMETHEUS_URL": prometheus}
    proc = subprocess.run([sys.executable, "-m", "app.cli", "handle", str(DEMO / "alert.json")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    results: list[dict[str, Any]] = json.loads(proc.stdout)["results"]
    assert {r["outcome"] for r in results} <= {"pr_opened", "duplicate"}, results
    [opened] = [r for r in results if r["outcome"] == "pr_opened"]
    diff = subprocess.run(["git", "diff", "main", opened["branch"]], cwd=bare, check=True, capture_output=True,
                          text=True, timeout=30).stdout
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == RAISED, "today's sizing: x1.5 of the limit"
    return opened


def evidence_metrics(mlflow_uri: str, record_id: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    run = mlflow_run(mlflow_uri, record_id)
    local = MlflowClient(tracking_uri=mlflow_uri).download_artifacts(run.info.run_id, "evidence.json")
    metrics: dict[str, Any] = json.loads(Path(local).read_text())["metrics"]
    return metrics


def pr_body(gh: FakeGitHub) -> str:
    [post] = gh.requests_to("POST", "/pulls")
    return str(post.body["body"]).replace("\\", "")  # markdown escapes (query\_range) aside


def test_prometheus_down_falls_back_to_todays_sizing_and_says_so(tmp_path: Path, mlflow_uri: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    with FakeGitHub("acme/gitops", token=TOKEN) as gh, KubeApiFake.from_snapshot(DEMO / "cluster.json") as kube:
        opened = handle(tmp_path, mlflow_uri, gh, kube, prometheus=down)
        body = pr_body(gh)
    reason = "prometheus: connection refused (GET /api/v1/query_range)"
    assert f"Sized without metrics: {reason}." in body
    metrics = evidence_metrics(mlflow_uri, opened["record_id"])
    assert (metrics["status"], metrics["reason"], metrics["source"]) == ("unavailable", reason, down)
    assert [q["name"] for q in metrics["queries"]] == ["memory_working_set_bytes"], "stopped at the first failure"


def test_a_query_that_returns_nothing_falls_back_and_says_what_has_no_data(tmp_path: Path, mlflow_uri: str) -> None:
    alert_at = incidents(DEMO)[0].starts_at.timestamp()
    others = Scenario(namespace="shop", alert_at=alert_at)  # Prometheus holds checkout-redis, and staging's checkout
    others.replica("checkout-redis", "6b8f9d7c4", suffix="zt5kw", start=-1 * DAY, containers=[
        Container("redis", image="redis:7.2", memory=50 * MiB, limits={"memory": "128Mi"})])
    others.pod("checkout-7d9f8b6c5-abcde", namespace="staging", start=-1 * DAY, containers=[
        Container("checkout", image="ghcr.io/acme/checkout:1.5.0-rc1", memory=700 * MiB, limits={"memory": "1Gi"})])
    with PrometheusServer(others, tmp_path / "prometheus") as prometheus, \
            FakeGitHub("acme/gitops", token=TOKEN) as gh, KubeApiFake.from_snapshot(DEMO / "cluster.json") as kube:
        opened = handle(tmp_path, mlflow_uri, gh, kube, prometheus=prometheus.url)
        body = pr_body(gh)
    reason = ("Prometheus has no working set or CPU usage of the pods of Deployment checkout in namespace shop over "
              "the 72 h before the alert")
    assert f"Sized without metrics: {reason}." in body
    metrics = evidence_metrics(mlflow_uri, opened["record_id"])
    assert (metrics["status"], metrics["reason"], metrics["series"]) == ("no_data", reason, [])
    assert len(metrics["queries"]) == 8 and metrics["end"] == alert_at
