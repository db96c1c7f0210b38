"""Declared stage (recorded as "declared"): HTTP probes answering 404 that nothing in the cluster shows served, and
the one path git declares, in process on tests/scenarios/real-probe404-declared-path (grafana/helm-charts' chart
vendored, the team's values mistyping /api/healthz) and real-probe404-both-catalogue (sock-shop, nothing
declared)."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.adapters.snapshot import SnapshotCluster
from app.demo import seed_bare_repo
from app.models.causes import ProbeFacts
from app.stages import change, declared
from tests.conftest import SCENARIOS
from tests.stages.world import World, make_world

GRAFANA = SCENARIOS / "real-probe404-declared-path"
VALUES = "envs/prod/grafana/values.yaml"
LOG = "monitoring/grafana-7f6c9d8b54-n8q2w/grafana"


@pytest.fixture
def grafana(tmp_path: Path) -> Iterator[World]:
    built = make_world(tmp_path, GRAFANA)
    yield built
    built.ledger.close()


def _find(world: World) -> declared.Declared:
    ev = world.evidence()
    diagnosis = world.diagnosis(ev)
    assert declared.wanted(diagnosis), diagnosis
    located = change.locate(evidence=ev, workspace=world.workspace, identity=world.pipeline().identity)
    return declared.find(located=located, evidence=ev, diagnosis=diagnosis, workspace=world.workspace)


def _values_say(world: World, tmp_path: Path, old: str, new: str) -> None:
    source = tmp_path / "source"
    shutil.copytree(GRAFANA / "repo", source)
    text = (source / VALUES).read_text()
    assert old in text
    (source / VALUES).write_text(text.replace(old, new))
    seed_bare_repo(source, world.bare)


def test_the_one_path_the_charts_defaults_declare_fixes_both_probes(grafana: World) -> None:
    out = _find(grafana)
    assert out.stop is None and out.diagnosis.fixable
    facts = out.diagnosis.finding.facts
    assert isinstance(facts, ProbeFacts)
    assert [(facts.probe, facts.old, facts.new)] + [(o.probe, o.old, o.new) for o in facts.others or []] == [
        ("livenessProbe", "/api/healthz", "/api/health"), ("readinessProbe", "/api/healthz", "/api/health")]
    assert out.decision == ("git declares /api/health for livenessProbe and readinessProbe: chart defaults "
                            "charts/grafana/values.yaml declares readinessProbe.httpGet.path /api/health")
    assert "chart defaults charts/grafana/values.yaml declares livenessProbe.httpGet.path /api/health" in \
        out.diagnosis.finding.evidence


def test_two_declared_paths_are_a_guess(grafana: World, tmp_path: Path) -> None:
    _values_say(grafana, tmp_path, "admin:\n", "service:\n  annotations:\n    "
                "service.beta.kubernetes.io/aws-load-balancer-healthcheck-path: /login\n\nadmin:\n")
    out = _find(grafana)
    assert out.stop is not None and out.stop.kind == "no_fix"
    assert out.stop.reason.endswith(
        "set the paths by hand; git declares 2 paths (/api/health, /login: chart defaults charts/grafana/values.yaml "
        "declares readinessProbe.httpGet.path /api/health; chart defaults charts/grafana/values.yaml declares "
        "livenessProbe.httpGet.path /api/health; values file envs/prod/grafana/values.yaml declares "
        "service.annotations.service.beta.kubernetes.io/aws-load-balancer-healthcheck-path /login): not guessing "
        "which")


def test_a_declared_path_the_access_log_answers_with_404_is_no_evidence(grafana: World) -> None:
    data = json.loads((GRAFANA / "cluster.json").read_text())
    logs = copy.deepcopy(data["logs"])
    logs[LOG]["previous"] = logs[LOG]["previous"].replace(
        'logger=server ', 'logger=context userId=0 orgId=0 uname= t=2026-11-23T10:02:41.2Z level=info '
        'msg="Request Completed" method=GET path=/api/health status=404 remote_addr=10.244.0.1 time_ms=0 '
        'handler=notfound status_source=server\nlogger=server ', 1)
    grafana.cluster = SnapshotCluster(data["items"], logs=logs)
    out = _find(grafana)
    assert out.stop is not None
    assert "; git declares /api/health, but the container's own log answers GET /api/health with 404: " in \
        out.stop.reason


def test_a_declared_path_named_for_another_probe_does_not_serve_it(grafana: World, tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(GRAFANA / "repo", source)
    chart = source / "charts/grafana/values.yaml"
    chart.write_text(chart.read_text().replace("    path: /api/health\n", "    path: /readyz\n"))
    seed_bare_repo(source, grafana.bare)
    out = _find(grafana)
    assert out.stop is not None
    assert out.stop.reason.endswith("git declares only /readyz, named for another probe's purpose than livenessProbe")


def test_nothing_declared_keeps_the_clusters_reason(tmp_path: Path) -> None:
    world = make_world(tmp_path, SCENARIOS / "real-probe404-both-catalogue")
    try:
        outcome = world.pipeline().handle(world.incident())
    finally:
        world.ledger.close()
    assert outcome.outcome == "no_fix"
    assert outcome.reason.endswith("set the paths by hand; git declares no other health path for it")
    assert [s.stage for s in outcome.stages][-2:] == ["source", "declared"]
