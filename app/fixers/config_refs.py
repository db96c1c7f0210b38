"""Correct a ConfigMap reference (name or key) that has a typo, everywhere the pod template uses it."""

from __future__ import annotations

from typing import Any

from app import kube, podspecs
from app.errors import NoFix
from app.models.causes import Cause, ConfigTypoFacts
from app.models.changes import FieldChange, Plan
from app.policies import Policy


def plan(facts: ConfigTypoFacts, document: dict[str, Any], policy: Policy) -> Plan:
    kind = str(document.get("kind"))
    prefix = kube.POD_TEMPLATE_PREFIX.get(kind)
    if prefix is None:
        raise NoFix(f"{kind} has no pod template to change", code="unsupported_kind")
    missing, key, new = facts.missing, facts.key, facts.replacement
    # The references are looked up again in git: the file, not the live object, is what the PR changes.
    refs = podspecs.references(kube.pod_spec_of(document, kind), "ConfigMap", missing, key=key or None)
    old = key or missing
    if not refs:
        raise NoFix(f"the manifest in git no longer references {old}: a correction is waiting to be synced",
                    code="already_in_git")
    what = f"key {old} of ConfigMap {missing}" if key else f"ConfigMap {missing}"
    changes = [FieldChange(path=f"{prefix}.spec.{r.path}", old=old, new=new,
                           reason=f"{what} does not exist; {new} does ({r.describe})") for r in refs]
    noun = "ConfigMap key" if key else "ConfigMap"
    return Plan(cause=Cause.CONFIG_REFERENCE, changes=changes, summary=f"Correct {noun} reference {old} to {new}")
