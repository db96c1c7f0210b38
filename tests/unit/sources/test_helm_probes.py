"""A probe added to a Helm-deployed container goes where the chart's values set its probes: bitnami's keycloak
values (verbatim, tests/scenarios/real-slowstart-helm-keycloak) toggle a startupProbe next to the liveness
probe; a probe field already rendered is raised at its own values key."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path
from typing import Any

import pytest

from app import causes
from app.errors import NoFix
from app.models.changes import FieldChange, Plan
from app.sources import deployers
from app.sources.layouts import Layouts
from tests.conftest import SCENARIOS
from tests.fakes.renderers import FakeRenderer
from tests.unit.detectors.support import POLICY, gathered
from tests.unit.sources.goldens import IDENTITY, DirRepo, apply

SCENARIO = SCENARIOS / "real-slowstart-helm-keycloak"
VALUES = "envs/prod/keycloak/values.yaml"
STARTUP = ("startupProbe:\n  enabled: false\n  initialDelaySeconds: 30\n  periodSeconds: 5\n  timeoutSeconds: 1\n"
           "  failureThreshold: 10\n  successThreshold: 1\n")


def _repo(tmp_path: Path, replace: tuple[str, str] | None = None) -> DirRepo:
    root = tmp_path / "repo"
    shutil.copytree(SCENARIO / "repo", root)
    if replace is not None:
        text = (root / VALUES).read_text()
        assert text.count(replace[0]) == 1
        (root / VALUES).write_text(text.replace(*replace))
    return DirRepo(root)


def _edits(repo: DirRepo, plan: Plan | None = None) -> tuple[list[Any], dict[str, str]]:
    ev = gathered("real-slowstart-helm-keycloak")
    location = deployers.locate(ev, repo, IDENTITY)
    layout = Layouts(renderer=FakeRenderer(helm=False)).of(location)
    workload = layout.effective(location, ev, repo=repo)
    if plan is None:
        plan = causes.plan(causes.diagnose(ev)[0], workload, POLICY)
    edits = layout.edits(location, plan, evidence=ev, repo=repo, workload=workload)
    return edits, apply(edits, repo)


def _changed(repo: DirRepo, texts: dict[str, str]) -> list[str]:
    diff = difflib.unified_diff(repo.read_text(VALUES).splitlines(), texts[VALUES].splitlines(), lineterm="")
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_a_toggled_startup_probe_is_enabled_with_a_threshold_at_the_charts_own_period(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    edits, texts = _edits(repo)
    assert [(e.path, [(c.path, c.old, c.new) for c in e.changes]) for e in edits] == [
        (VALUES, [("startupProbe.enabled", False, True), ("startupProbe.failureThreshold", 10, 54)])]
    assert "initialDelaySeconds 30 + failureThreshold 54 x periodSeconds 5 = 300 s" in edits[0].changes[1].reason
    assert _changed(repo, texts) == ["-  enabled: false", "+  enabled: true", "-  failureThreshold: 10",
                                     "+  failureThreshold: 54"]


def test_a_toggled_probe_already_enabled_in_git_waits_for_the_sync(tmp_path: Path) -> None:
    repo = _repo(tmp_path, (STARTUP, STARTUP.replace("enabled: false", "enabled: true").replace(": 10\n", ": 60\n")))
    with pytest.raises(NoFix) as err:
        _edits(repo)
    assert err.value.code == "already_in_git"


def test_a_mapping_the_chart_passes_through_gets_the_planned_probe(tmp_path: Path) -> None:
    repo = _repo(tmp_path, (STARTUP, "startupProbe:\n  timeoutSeconds: 5\n"))
    _, texts = _edits(repo)
    assert _changed(repo, texts) == [
        "+  httpGet:", "+    path: /health/live", "+    port: 9000", "+    scheme: HTTP", "+  periodSeconds: 10",
        "+  failureThreshold: 30"]


def test_no_startup_probe_in_the_values_of_a_chart_not_in_the_repo_is_not_guessed(tmp_path: Path) -> None:
    repo = _repo(tmp_path, (STARTUP, ""))
    with pytest.raises(NoFix) as err:
        _edits(repo)
    assert err.value.code == "no_values_key"
    assert "hold no startupProbe next to livenessProbe" in err.value.message
    assert "the chart is not in the repository" in err.value.message


def test_two_liveness_mappings_matching_the_container_are_not_guessed(tmp_path: Path) -> None:
    twin = ("exporter:\n  livenessProbe:\n    enabled: true\n    initialDelaySeconds: 120\n    periodSeconds: 1\n"
            "    timeoutSeconds: 5\n    failureThreshold: 3\n    successThreshold: 1\n")
    repo = _repo(tmp_path, (STARTUP, STARTUP + twin))
    with pytest.raises(NoFix, match="2 livenessProbe mappings matching"):
        _edits(repo)


def test_a_rendered_probe_field_is_raised_at_its_own_values_key(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    path = "spec.template.spec.containers[name=keycloak].livenessProbe.initialDelaySeconds"
    plan = Plan(cause="slow_start", summary="raise", changes=[FieldChange(path=path, old=120, new=300, reason="t")])
    edits, texts = _edits(repo, plan)
    assert [(c.path, c.old, c.new) for e in edits for c in e.changes] == [("livenessProbe.initialDelaySeconds", 120, 300)]
    assert _changed(repo, texts) == ["-  initialDelaySeconds: 120", "+  initialDelaySeconds: 300"]
