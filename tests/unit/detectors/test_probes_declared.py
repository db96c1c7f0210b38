"""HTTP probes answering 404 (issue 13, class 4): a path declared elsewhere counts as evidence of the path the
container serves. In the cluster: another container of the pod probing the same port and passing, a load
balancer's health-check annotation. In git (app/detectors/probes.py's readers, used by app/stages/declared.py):
the chart's values (grafana/helm-charts' values.yaml verbatim, tests/scenarios/real-probe404-declared-path) and
the manifests' Service, Ingress and BackendConfig declarations."""

from __future__ import annotations

from typing import Any

import yaml

from app.detectors import probes
from app.models.causes import ProbeFacts
from tests.conftest import SCENARIOS
from tests.unit.detectors.support import container, varied

GRAFANA = SCENARIOS / "real-probe404-declared-path" / "repo"
CATALOGUE = "real-probe404-both-catalogue"


def _values(path: str) -> Any:
    return yaml.safe_load((GRAFANA / path).read_text())


def test_the_charts_values_declare_the_probes_paths_and_nothing_else() -> None:
    found = probes.declared_in_values([("chart defaults charts/grafana/values.yaml", _values("charts/grafana/values.yaml")),
                                       ("values file envs/prod/grafana/values.yaml",
                                        _values("envs/prod/grafana/values.yaml"))])
    assert found == [
        ("/api/health", "chart defaults charts/grafana/values.yaml declares readinessProbe.httpGet.path /api/health"),
        ("/api/health", "chart defaults charts/grafana/values.yaml declares livenessProbe.httpGet.path /api/health"),
        ("/api/healthz", "values file envs/prod/grafana/values.yaml declares readinessProbe.httpGet.path /api/healthz"),
        ("/api/healthz", "values file envs/prod/grafana/values.yaml declares livenessProbe.httpGet.path /api/healthz"),
    ], "ingress.path /, serviceMonitor.path /metrics and grafana.ini's paths are no health paths"


def test_bitnami_style_probe_paths_and_annotations_set_through_values_count() -> None:
    values = {"startupProbe": {"enabled": True, "path": "/startz"},
              "service": {"annotations": {"service.beta.kubernetes.io/aws-load-balancer-healthcheck-path": "/ping"}},
              "metrics": {"path": "/metrics"}, "healthcheck": {"interval": 10}}
    assert [p for p, _ in probes.declared_in_values([("values", values)])] == ["/startz", "/ping"]


def test_manifests_declare_load_balancer_health_checks() -> None:
    objects = [
        {"kind": "Service", "metadata": {"name": "web", "annotations": {
            "service.beta.kubernetes.io/do-loadbalancer-healthcheck-path": "/status"}}},
        {"kind": "Ingress", "metadata": {"name": "web", "annotations": {
            "alb.ingress.kubernetes.io/healthcheck-path": "/status", "nginx.ingress.kubernetes.io/rewrite-target": "/"}}},
        {"kind": "BackendConfig", "metadata": {"name": "web"}, "spec": {"healthCheck": {"requestPath": "/status"}}},
        {"kind": "Deployment", "metadata": {"name": "web"}},
    ]
    found = probes.declared_in_objects([("apps/web.yaml", o) for o in objects])
    assert [w for _, w in found] == [
        "apps/web.yaml: Service web declares service.beta.kubernetes.io/do-loadbalancer-healthcheck-path: /status",
        "apps/web.yaml: Ingress web declares alb.ingress.kubernetes.io/healthcheck-path: /status",
        "apps/web.yaml: BackendConfig web declares healthCheck.requestPath /status"]


def test_a_path_named_for_another_probes_purpose_does_not_fit() -> None:
    assert probes.fits("livenessProbe", "/api/health") and probes.fits("readinessProbe", "/api/health")
    assert not probes.fits("readinessProbe", "/livez") and not probes.fits("livenessProbe", "/readyz")


def _sidecar(port: Any, path: str = "/health") -> Any:
    def change(data: dict[str, Any]) -> None:
        spec = data["object"]["spec"]["template"]["spec"]
        spec["containers"].append({"name": "envoy", "image": "envoyproxy/envoy:v1.31.2",
                                   "ports": [{"containerPort": 9901, "name": "admin"}],
                                   "readinessProbe": {"httpGet": {"path": path, "port": port}, "periodSeconds": 5}})
    return change


def test_another_containers_probe_passing_on_the_same_port_shows_the_path() -> None:
    d = probes.detect(varied(CATALOGUE, _sidecar(80)))
    assert d is not None and d.fixable, d.no_fix_reason
    facts = d.finding.facts
    assert isinstance(facts, ProbeFacts) and (facts.new, [o.new for o in facts.others or []]) == ("/health", ["/health"])
    assert any("container envoy's readinessProbe passes on port 80 at /health" in line for line in d.finding.evidence)


def test_another_containers_probe_on_its_own_port_shows_nothing() -> None:
    d = probes.detect(varied(CATALOGUE, _sidecar("admin", "/ready")))
    assert d is not None and not d.fixable


def test_the_containers_own_probes_still_come_first() -> None:
    def change(data: dict[str, Any]) -> None:
        _sidecar(80, "/healthcheck")(data)
        container(data)["readinessProbe"]["httpGet"]["path"] = "/health"  # and it passes: no Unhealthy events
        data["events"] = [e for e in data["events"] if not str(e.get("message")).startswith("Readiness probe")]
    d = probes.detect(varied(CATALOGUE, change))
    assert d is not None and d.fixable
    facts = d.finding.facts
    assert isinstance(facts, ProbeFacts) and facts.new == "/health"
