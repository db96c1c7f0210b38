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
