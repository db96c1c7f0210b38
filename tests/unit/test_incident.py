"""The alert as the pipeline sees it: its own context (where, how bad, since when, runbook, graph), parsed from
the webhook bodies a real Alertmanager sends (../shared/reference/), with the graph link kept only when it is
an http(s) URL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.models.alertmanager import WebhookPayload
from app.models.incident import Incident, firing_for
from tests.conftest import EXAMPLES

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"


def incidents(payload: dict[str, object]) -> list[Incident]:
    return [Incident.from_alert(a) for a in WebhookPayload.model_validate(payload).alerts]


def test_context_in_the_order_an_on_call_reads_it() -> None:
    [first, _] = incidents(json.loads((EXAMPLES / "demo" / "alert.json").read_text()))
    assert [name for name, _ in first.context()] == ["severity", "prometheus", "since", "summary", "description",
                                                     "runbook", "graph"]
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


def test_context_says_for_how_long_it_fired_at_the_decision_time() -> None:
    [first, _] = incidents(json.loads((EXAMPLES / "demo" / "alert.json").read_text()))
    decided = datetime(2026, 11, 23, 17, 20, 40, tzinfo=UTC)  # startsAt 15:15:29.74
    said = dict(first.context(now=decided))
    assert said["for"] == "2 h 5 min" and said["prometheus"] == "monitoring/k8s"
    assert "for" not in dict(first.context())


@pytest.mark.parametrize(("seconds", "said"), [(40, "40 s"), (60, "1 min"), (7500, "2 h 5 min"), (7200, "2 h"),
                                               (3 * 86400 + 4 * 3600 + 59, "3 d 4 h"), (86400, "1 d"), (-5, "")],
                         ids=["seconds", "a-minute", "hours-minutes", "whole-hours", "days-hours", "a-day", "future"])
def test_firing_for(seconds: int, said: str) -> None:
    start = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    assert firing_for(start, start + timedelta(seconds=seconds)) == said


def test_external_labels_and_cluster_are_context() -> None:
    payload = json.loads((EXAMPLES / "demo" / "alert.json").read_text())
    payload["alerts"][0]["labels"] |= {"cluster": "eu-west-1-prod", "prometheus_replica": "prometheus-k8s-1"}
    said = dict(incidents(payload)[0].context())
    assert said["cluster"] == "eu-west-1-prod" and said["replica"] == "prometheus-k8s-1"
