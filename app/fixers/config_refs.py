"""Correct a ConfigMap reference (name or key) that has a typo, everywhere the pod template uses it."""

from __future__ import annotations

from typing import Any

from app import kube
from app.detectors import config_refs
from app.errors import NoFix
from app.models.changes import FieldChange, Plan
from app.models.diagnosis import Diagnosis
from app.policies import Policy

CAUSE = config_refs.CAUSE


def plan(diagnosis: Diagnosis, document: dict[str, Any], policy: Policy) -> Plan:
    facts = diagnosis.finding.facts
    kind = str(document.get("kind"))
    prefix = kube.POD_TEMPLATE_PREFIX.get(kind)
    if prefix is None:
        raise NoFix(f"{kind} has no pod template to change", code="unsupported_kind")
    missing, key, new = str(facts["missing"]), facts.get("key"), str(facts["replacement"])
    # The references are looked up again in git: the file, not the live object, is what the PR changes.
    refs = config_refs.references(kube.pod_spec_of(document, kind), "ConfigMap", missing,
                                  key=str(key) if key else None)
    old = str(key) if key else missing
    if not refs:
        raise NoFix(f"the manifest in git no longer references {old}: a correction is waiting to be synced",
                    code="already_in_git")
    what = f"key {old} of ConfigMap {missing}" if key else f"ConfigMap {missing}"
    changes = [FieldChange(path=f"{prefix}.spec.{r.path}", old=old, new=new,
                           reason=f"{what} does not exist; {new} does ({r.describe})") for r in refs]
    noun = "ConfigMap key" if key else "ConfigMap"
    return Plan(cause=CAUSE, changes=changes, summary=f"Correct {noun} reference {old} to {new}")
