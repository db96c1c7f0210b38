"""probe_misconfigured: a probe on a port the container does not declare, or a 404 path when another probe
of the container passes on the same port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.detectors import probes
from app.errors import NoFix
from app.models.causes import Cause, ProbeFacts
from tests.conftest import SCENARIOS
from tests.unit.detectors.support import apply, container, ev_of, varied


def _facts(d: Any) -> ProbeFacts:
    assert isinstance(d.finding.facts, ProbeFacts)
    return d.finding.facts


def test_probe_on_undeclared_port_goes_to_named_port_http() -> None:
    d = probes.detect(ev_of("probe-wrong-port"))
    assert d is not None and d.fixable and d.cause == Cause.PROBE_MISCONFIGURED
    assert (_facts(d).probe, _facts(d).old, _facts(d).new) == ("livenessProbe", 8081, "http")
    _, changed = apply(d, SCENARIOS / "probe-wrong-port/repo/apps/catalog/deployment.yaml")
    assert changed == "-              port: 8081\n+              port: http"


def test_probe_fix_refuses_a_port_git_does_not_declare() -> None:
    d = probes.detect(ev_of("probe-wrong-port"))
    assert d is not None
    text = (SCENARIOS / "probe-wrong-port/repo/apps/catalog/deployment.yaml").read_text()
    with pytest.raises(NoFix, match="does not declare port http"):
        apply(d, Path("unused"), text.replace("- name: http", "- name: web"))


def _ports(ports: list[dict[str, Any]], *, liveness_port: Any = 8081, readiness_port: Any = "http") -> Any:
    def change(data: dict[str, Any]) -> None:
        c = container(data)
        c["ports"] = ports
        c["livenessProbe"]["httpGet"]["port"] = liveness_port
        c["readinessProbe"]["httpGet"]["port"] = readiness_port
    return change


@pytest.mark.parametrize(("change", "fixable", "new"), [
    (_ports([{"containerPort": 8080, "protocol": "TCP"}], readiness_port=8080), True, 8080),
    (_ports([{"name": "web", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}],
            readiness_port="web"), True, "web"),
    (_ports([{"name": "web", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}],
            readiness_port=None), False, None),
    (_ports([{"name": "http", "containerPort": 8080}], liveness_port="management"), True, "http"),
], ids=["single-unnamed-port", "port-of-passing-readiness", "ambiguous", "named-port-missing"])
def test_probe_port_choice(change: Any, fixable: bool, new: Any) -> None:
    d = probes.detect(varied("probe-wrong-port", change))
    assert d is not None and d.fixable is fixable, d
    assert _facts(d).new == new


def _status_404(*, readiness_path: str | None) -> Any:
    def change(data: dict[str, Any]) -> None:
        c = container(data)
        c["livenessProbe"]["httpGet"].update({"port": "http", "path": "/healthz"})
        if readiness_path is None:
            del c["readinessProbe"]
        else:
            c["readinessProbe"]["httpGet"]["path"] = readiness_path
        for e in data["events"]:
            if e["reason"] == "Unhealthy":
                e["message"] = "Liveness probe failed: HTTP probe failed with statuscode: 404"
    return change


def test_404_path_fixed_only_with_a_passing_probe_on_the_same_port() -> None:
    d = probes.detect(varied("probe-wrong-port", _status_404(readiness_path="/actuator/health/readiness")))
    assert d is not None and d.fixable and _facts(d).field == "path"
    assert _facts(d).new == "/actuator/health/readiness"
    alone = probes.detect(varied("probe-wrong-port", _status_404(readiness_path=None)))
    assert alone is not None and not alone.fixable and "404" in alone.finding.root_cause


def test_probe_on_declared_port_failing_is_not_a_probe_misconfiguration() -> None:
    assert probes.detect(ev_of("slow-start")) is None


# ---------------------------------------------------------------- HTTP probes answering 404: every probe, evidence


FRONTEND = "real-probe404-readiness-frontend"
FRONTEND_LOG = "frontend-5f8d7c9b64-qw4lp/server"
CATALOGUE = "real-probe404-both-catalogue"
CATALOGUE_LOG = "catalogue-6b9c8d7f45-t4wzr/catalogue"
CATALOGUE_DEP = SCENARIOS / CATALOGUE / "repo/sock-shop/base/catalogue-dep.yaml"


def test_readiness_404_goes_to_the_path_the_access_log_and_the_liveness_probe_show() -> None:
    d = probes.detect(ev_of(FRONTEND))
    assert d is not None and d.fixable
    assert (_facts(d).probe, _facts(d).old, _facts(d).new, _facts(d).others) == \
        ("readinessProbe", "/healthz", "/_healthz", None)
    assert any("livenessProbe passes on the same port at /_healthz" in line
               and "the container's own log answers GET /_healthz with 200" in line for line in d.finding.evidence)
    assert any("answers GET /healthz with 404" in line for line in d.finding.evidence)


def test_the_access_log_alone_shows_the_served_path() -> None:
    d = probes.detect(varied(FRONTEND, lambda data: container(data).pop("livenessProbe")))
    assert d is not None and d.fixable and _facts(d).new == "/_healthz"
    assert "livenessProbe passes" not in "\n".join(d.finding.evidence)


def test_without_a_passing_probe_or_access_log_the_404_is_reported_not_fixed() -> None:
    def change(data: dict[str, Any]) -> None:
        container(data).pop("livenessProbe")
        data["logs"][FRONTEND_LOG] = data["logs"][FRONTEND_LOG].replace('"http.req.path":"/_healthz"',
                                                                        '"http.req.path":"/"')
    d = probes.detect(varied(FRONTEND, change))
    assert d is not None and not d.fixable
    assert "readinessProbe GET /healthz on port 8080 answers HTTP 404" in str(d.no_fix_reason)


def test_both_probes_404_without_evidence_are_both_named() -> None:
    d = probes.detect(ev_of(CATALOGUE))
    assert d is not None and not d.fixable and d.cause == Cause.PROBE_MISCONFIGURED
    reason = str(d.no_fix_reason)
    assert "livenessProbe GET /healthz on port 80 answers HTTP 404 and readinessProbe GET /healthz on port 80 " \
           "answers HTTP 404" in reason
    assert "(kubelet: Liveness probe failed: HTTP probe failed with statuscode: 404; Readiness probe failed: " \
           "HTTP probe failed with statuscode: 404)" in reason


def _catalogue_served(change: Any) -> Any:
    d = probes.detect(varied(CATALOGUE, change))
    assert d is not None and d.fixable, d.no_fix_reason
    assert (_facts(d).probe, _facts(d).new) == ("livenessProbe", "/health")
    assert [(o.probe, o.old, o.new) for o in _facts(d).others or []] == [("readinessProbe", "/healthz", "/health")]
    _, changed = apply(d, CATALOGUE_DEP)
    assert changed == ("-            path: /healthz\n+            path: /health\n"
                       "-            path: /healthz\n+            path: /health")
    return d


def test_both_probes_fixed_from_a_load_balancers_declared_health_check_path() -> None:
    def change(data: dict[str, Any]) -> None:
        [svc] = [o for o in data["related"] if o["kind"] == "Service"]
        svc["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-healthcheck-path"] = "/health"
    d = _catalogue_served(change)
    assert any("declares the health-check path /health" in line for line in d.finding.evidence)


def test_both_probes_fixed_from_an_access_log_in_combined_format() -> None:
    def change(data: dict[str, Any]) -> None:
        data["logs"][CATALOGUE_LOG] += ('10.244.2.1 - - [23/Nov/2026:15:04:02 +0000] "GET /health HTTP/1.1" 200 56 '
                                        '"-" "curl/8.5.0"\n')
    _catalogue_served(change)


def test_several_health_paths_in_the_access_log_go_by_the_probes_purpose() -> None:
    def change(data: dict[str, Any]) -> None:
        data["logs"][CATALOGUE_LOG] += "".join(
            f'10.244.2.1 - - [23/Nov/2026:15:04:0{i} +0000] "GET {p} HTTP/1.1" 200 2 "-" "kube-probe/1.35"\n'
            for i, p in enumerate(("/livez", "/readyz")))
    d = probes.detect(varied(CATALOGUE, change))
    assert d is not None and d.fixable
    assert (_facts(d).probe, _facts(d).new) == ("livenessProbe", "/livez")
    assert [(o.probe, o.new) for o in _facts(d).others or []] == [("readinessProbe", "/readyz")]


def test_a_fix_for_one_of_two_failing_probes_is_not_made_alone() -> None:
    def change(data: dict[str, Any]) -> None:
        data["logs"][CATALOGUE_LOG] += ('10.244.2.1 - - [23/Nov/2026:15:04:02 +0000] "GET /livez HTTP/1.1" 200 2 '
                                        '"-" "kube-probe/1.35"\n10.244.2.1 - - [23/Nov/2026:15:04:03 +0000] '
                                        '"GET /metricz HTTP/1.1" 200 2 "-" "curl"\n')
    d = probes.detect(varied(CATALOGUE, change))
    assert d is not None and not d.fixable
    assert "readinessProbe GET /healthz on port 80 answers HTTP 404" in str(d.no_fix_reason)
    assert "livenessProbe GET" not in str(d.no_fix_reason)


def test_an_undeclared_port_is_not_wrong_while_the_container_never_got_up() -> None:
    assert probes.detect(ev_of("real-slowstart-helm-keycloak")) is None
