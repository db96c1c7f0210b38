"""The alert as the pipeline sees it: its own context (where, how bad, since when, runbook, graph), parsed from
the webhook bodies a real Alertmanager sends (../shared/reference/), with the graph link kept only when it is
an http(s) URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.models.alertmanager import WebhookPayload
from app.models.incident import Incident
from tests.conftest import EXAMPLES

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"


def incidents(payload: dict[str, object]) -> list[Incident]:
    return [Incident.from_alert(a) for a in WebhookPayload.model_validate(payload).alerts]


def test_context_in_the_order_an_on_call_reads_it() -> None:
    [first, _] = incidents(json.loads((EXAMPLES / "demo" / "alert.json").read_text()))
    assert [name for name, _ in first.context()] == ["severity", "since", "summary", "description", "runbook",
                                                     "graph"]
    said = dict(first.context())
    assert said["since"] == "2026-11-23T15:15:29Z" and said["severity"] == "warning"
    assert said["graph"].startswith("http://prometheus-k8s.monitoring.svc:9090/graph?g0.expr=")


@pytest.mark.parametrize("path", sorted(REFERENCE.glob("*.json")), ids=lambda p: p.name)
def test_every_captured_webhook_keeps_its_graph_link(path: Path) -> None:
    body = json.loads(path.read_text())
    assert body["version"] == "4" and body["alerts"], path.name
    for alert, incident in zip(body["alerts"], incidents(body), strict=True):
        assert incident.generator_url == alert["generatorURL"]
        assert dict(incident.context())["since"].endswith("Z")


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://prometheus/graph", "/graph?g0.expr=up", ""])
def test_a_graph_link_that_is_not_http_is_dropped(url: str) -> None:
    payload = json.loads((EXAMPLES / "demo" / "alert.json").read_text())
    payload["alerts"][0]["generatorURL"] = url
    assert incidents(payload)[0].generator_url == ""
    assert "graph" not in dict(incidents(payload)[0].context())
