"""/readyz and /metrics tell operators which dependency is failing, over real HTTP (uvicorn on 127.0.0.1).

The handler reads the workload through the real cluster adapter from a loopback Kubernetes API that answers
503 as an overloaded API server does (then recovers); the job's result reaches the app's health registry
through the worker, as in production. MLflow's state is reported the way the exporter reports it
(``health.error("mlflow", kind, message)``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.adapters.cluster import KubeCluster
from app.dependencies import DependencyHealth
from app.models.incident import Incident
from app.models.outcome import Outcome
from app.settings import Settings
from tests.conftest import EXAMPLES
from tests.edges.test_api import post, serve, wait_until
from tests.fakes.kube_api import KubeApiFake

DEMO = EXAMPLES / "demo"


@dataclass
class WorkloadReader:
    """Reads the alert's pod from the cluster, as the target stage does; a failure is the job's."""

    cluster: KubeCluster

    def handle(self, incident: Incident) -> Outcome:
        self.cluster.get("Pod", incident.labels["namespace"], incident.labels["pod"])
        return Outcome(alertname=incident.alertname, fingerprint=incident.fingerprint, outcome="no_fix",
                       reason="pod read")


@dataclass
class Service:
    client: httpx.Client
    kube: KubeApiFake
    health: DependencyHealth


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    apps: list[FastAPI] = []
    with KubeApiFake.from_snapshot(DEMO / "cluster.json") as kube:
        cluster = KubeCluster.from_config(str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
        settings = Settings(data_dir=tmp_path / "data", workers=1, lease_seconds=30)
        with serve(settings, WorkloadReader(cluster), tweak=apps.append) as client:  # type: ignore[arg-type]
            yield Service(client=client, kube=kube, health=apps[0].state.services.health)
        cluster.close()


def alert(index: int) -> bytes:
    payload = json.loads((DEMO / "alert.json").read_text())
    payload["alerts"] = [payload["alerts"][index]]
    return json.dumps(payload).encode()


def run_alert(client: httpx.Client, index: int) -> dict[str, object]:
    response = post(client, alert(index))
    assert response.status_code == 202, response.text
    [job_id] = response.json()["jobs"]
    seen: list[dict[str, object]] = []

    def first_attempt_ended() -> bool:
        seen.append(client.get(f"/jobs/{job_id}").json())  # one snapshot: queued again, or done
        return seen[-1]["attempts"] == 1 and seen[-1]["state"] != "running"

    wait_until(first_attempt_ended, "the job's first attempt")
    return seen[-1]


def metric(text: str, line_start: str) -> float:
    [value] = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(line_start)]
    return value


@pytest.mark.timeout(60)
def test_a_failing_cluster_api_makes_readyz_503_naming_it_and_metrics_count_it(service: Service) -> None:
    client = service.client
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    assert ready.json()["dependencies"]["cluster"] == {"state": "unknown", "required": True}

    service.kube.fail_next(1, status=503)
    job = run_alert(client, 0)
    assert job["state"] == "queued", job  # requeued, naming the dependency
    assert str(job["error"]).startswith("cluster_unavailable: cluster: the Kubernetes API answered HTTP 503 "), job

    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable" and body["checks"]["dependencies"] is False
    cluster = body["dependencies"]["cluster"]
    assert (cluster["state"], cluster["required"], cluster["last_kind"]) == ("down", True, "http_5xx")
    assert body["reason"].startswith("cluster down: cluster: the Kubernetes API answered HTTP 503 while reading "
                                     "pods/checkout-7d9f8b6c5-fghij in namespace shop")
    assert body["dependencies"]["forge"]["state"] == "unknown"

    text = client.get("/metrics").text
    assert metric(text, 'autofix_dependency_errors_total{dependency="cluster",kind="http_5xx"}') == 1.0
    assert metric(text, 'autofix_dependency_up{dependency="cluster"}') == 0.0
    assert metric(text, 'autofix_dependency_up{dependency="forge"}') == 1.0  # not called: not known down

    # The API server recovers: the next job's read answers, the service is ready again; the count stays.
    job = run_alert(client, 1)
    assert job["state"] == "done", job
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["dependencies"]["cluster"]["state"] == "up"
    text = client.get("/metrics").text
    assert metric(text, 'autofix_dependency_up{dependency="cluster"}') == 1.0
    assert metric(text, 'autofix_dependency_errors_total{dependency="cluster",kind="http_5xx"}') == 1.0


@pytest.mark.timeout(60)
def test_mlflow_down_leaves_the_service_ready_but_degraded(service: Service) -> None:
    client = service.client
    assert run_alert(client, 0)["state"] == "done"
    # What the exporter reports when MLflow refuses connections (app/dependencies.py's documented API).
    service.health.error("mlflow", "refused", "mlflow: connection refused (POST /api/2.0/mlflow/runs/create)")

    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded" and body["checks"]["dependencies"] is True
    assert body["dependencies"]["mlflow"]["state"] == "down" and body["dependencies"]["mlflow"]["required"] is False
    assert body["dependencies"]["cluster"]["state"] == "up"
    assert body["reason"] == "mlflow down: mlflow: connection refused (POST /api/2.0/mlflow/runs/create)"
    text = client.get("/metrics").text
    assert metric(text, 'autofix_dependency_errors_total{dependency="mlflow",kind="refused"}') == 1.0
    assert metric(text, 'autofix_dependency_up{dependency="mlflow"}') == 0.0

    service.health.ok("mlflow")  # the exporter's next send went through
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
