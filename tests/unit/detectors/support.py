"""Evidence and manifests for the detector tests, as production has them.

Evidence is gathered by the real evidence stage from the scenarios' cluster snapshots (statuses, events and
logs as the kubelet and controllers write them), then varied the way real incidents vary: ``varied``
changes the gathered evidence as JSON, ``evidence`` changes the snapshot's objects (or the alert's labels)
before gathering. Plans are made by the cause registry and applied to the scenario's git files with the
round-trip editor, checked by the same validation the pipeline runs.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from app import causes, fieldpaths, policies, targets, validation, yaml_rt
from app.adapters.snapshot import SnapshotCluster
from app.errors import NoFix
from app.models.alertmanager import Alert, WebhookPayload
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.models.incident import Incident
from app.policies import Policy
from app.stages import evidence as evidence_stage
from tests.conftest import ROOT, SCENARIOS

Items = list[dict[str, Any]]

POLICY = policies.load(ROOT / "policies")  # the shipped policy, as `autofix serve` loads it
SHIPPED: dict[str, Any] = yaml.safe_load((ROOT / "policies" / "default.yaml").read_text())
DEFAULT = Policy.model_validate(SHIPPED)  # the policy a first install runs with


# ---------------------------------------------------------------- evidence


def gathered(scenario: str) -> Evidence:
    root = SCENARIOS / scenario
    cluster = SnapshotCluster.from_file(root / "cluster.json")
    payload = WebhookPayload.model_validate_json((root / "alert.json").read_text())
    incident = Incident.from_alert(payload.alerts[0])
    return evidence_stage.gather(cluster, targets.resolve(cluster, incident), incident)


_CACHE: dict[str, Evidence] = {}


def ev_of(scenario: str) -> Evidence:
    if scenario not in _CACHE:
        _CACHE[scenario] = gathered(scenario)
    return _CACHE[scenario]


def varied(scenario: str, change: Any) -> Evidence:
    """A copy of a scenario's evidence as plain JSON, changed by ``change(data)`` in place."""
    data = json.loads(ev_of(scenario).model_dump_json())
    change(data)
    return Evidence.model_validate(data)


def container(data: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = data["object"]["spec"]["template"]["spec"]["containers"][0]
    return c


def evidence(name: str, *, mutate: Callable[[Items], None] | None = None,
             labels: dict[str, str | None] | None = None) -> Evidence:
    """A scenario's evidence gathered after ``mutate`` changed the snapshot's objects and ``labels`` the alert's."""
    data = json.loads((SCENARIOS / name / "cluster.json").read_text())
    items: Items = copy.deepcopy(data["items"])
    if mutate:
        mutate(items)
    cluster = SnapshotCluster(items, logs=data.get("logs"))
    raw = json.loads((SCENARIOS / name / "alert.json").read_text())["alerts"][0]
    for key, value in (labels or {}).items():
        if value is None:
            raw["labels"].pop(key, None)
        else:
            raw["labels"][key] = value
    incident = Incident.from_alert(Alert.model_validate(raw))
    return evidence_stage.gather(cluster, targets.resolve(cluster, incident), incident)


def item(items: Items, kind: str, name: str | None = None) -> dict[str, Any]:
    return next(i for i in items if i["kind"] == kind and (name is None or i["metadata"]["name"] == name))


def container_at(obj: dict[str, Any], path: str = "spec.template.spec.containers[0]") -> dict[str, Any]:
    found: dict[str, Any] = fieldpaths.get(obj, path)
    return found


# ---------------------------------------------------------------- git


def git(name: str, path: str, *, replace: tuple[str, str] | None = None) -> dict[str, Any]:
    """The first document of a scenario's git file, as the fixer gets it (``replace`` edits the text first)."""
    text = (SCENARIOS / name / "repo" / path).read_text()
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    doc: dict[str, Any] = yaml_rt.documents(text)[0]
    return doc


def apply(diagnosis: Diagnosis, repo_file: Path, text: str | None = None) -> tuple[str, str]:
    """The plan applied to a git file: (new text, unified changed lines), validated like the pipeline does."""
    text = text if text is not None else repo_file.read_text()
    document = yaml_rt.documents(text)[0]
    plan = causes.plan(diagnosis, document, POLICY)
    new = yaml_rt.edit(text, document_index=0, changes=[(c.path, c.new) for c in plan.changes])
    validation.check(text, new, document_index=0, plan=plan)
    diff = difflib.unified_diff(text.splitlines(), new.splitlines(), lineterm="")
    return new, "\n".join(line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---")))


# ---------------------------------------------------------------- one detect-and-plan case of a table


def check_case(scenario: str, manifest: str, mutate: Callable[[Items], None] | None, replace: tuple[str, str] | None,
               policy: Policy, expected: Any) -> None:
    """The registry's first finding for the (varied) scenario, then its plan on the manifest in git.

    ``expected`` is ``{path: new}``, a NoFix code, or ``"no_fix:<text>"`` (a finding that is not fixable).
    """
    found = causes.diagnose(evidence(scenario, mutate=mutate))
    assert found, "a detector must recognise the failure"
    diagnosis = found[0]
    if isinstance(expected, str) and expected.startswith("no_fix:"):
        assert not diagnosis.fixable, diagnosis
        assert expected.removeprefix("no_fix:") in str(diagnosis.no_fix_reason)
        return
    assert diagnosis.fixable, diagnosis.no_fix_reason
    document = git(scenario, manifest, replace=replace)
    if isinstance(expected, str):
        with pytest.raises(NoFix) as err:
            causes.plan(diagnosis, document, policy)
        assert err.value.code == expected
        return
    plan = causes.plan(diagnosis, document, policy)
    assert {c.path: c.new for c in plan.changes} == expected
    assert all(any(fieldpaths.matches(c.path, g) for g in SHIPPED["causes"][plan.cause]["paths"])
               for c in plan.changes), "the shipped policy must allow the change"
