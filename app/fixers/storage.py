"""Correct a StatefulSet volumeClaimTemplate's storageClassName to the existing class with the near name.

volumeClaimTemplates are immutable in a live StatefulSet: the change in git is right, but the sync fails
until the StatefulSet is recreated. The change's reason says so, and how (orphan delete keeps the pods).
"""

from __future__ import annotations

from typing import Any

from app import fieldpaths
from app.errors import NoFix
from app.models.causes import Cause, StorageClassFacts
from app.models.changes import FieldChange, Plan
from app.policies import Policy


def plan(facts: StorageClassFacts, document: dict[str, Any], policy: Policy) -> Plan:
    template, new, missing = facts.template, facts.storage_class, facts.missing_class
    if template is None or new is None:
        raise NoFix("the claim has no volumeClaimTemplate or no StorageClass with a near name",
                    code="nothing_to_correct")
    templates = (document.get("spec") or {}).get("volumeClaimTemplates") or []
    index = next((i for i, t in enumerate(templates) if (t.get("metadata") or {}).get("name") == template), None)
    if index is None:
        raise NoFix(f"the manifest in git has no volumeClaimTemplate {template}", code="no_template_in_git")
    path = f"spec.volumeClaimTemplates[{index}].spec.storageClassName"
    try:
        in_git = fieldpaths.get(document, path)
    except (KeyError, TypeError) as err:
        raise NoFix(f"volumeClaimTemplate {template} in git sets no storageClassName", code="no_class_in_git") from err
    if in_git == new:
        raise NoFix(f"git already asks for StorageClass {new}: the StatefulSet must be recreated to use it",
                    code="already_in_git")
    if in_git != missing:
        raise NoFix(f"git asks for StorageClass {in_git}, not the missing {missing}: someone changed it since; "
                    "not overriding", code="git_moved")
    name = (document.get("metadata") or {}).get("name")
    reason = (f"{missing} does not exist, {new} does. volumeClaimTemplates are immutable: before the sync, run "
              f"kubectl delete statefulset {name} --cascade=orphan and delete the Pending claim "
              f"{facts.claim} (no data yet)")
    return Plan(cause=Cause.PVC_STORAGE_CLASS, summary=f"Use StorageClass {new} for volumeClaimTemplate {template}",
                changes=[FieldChange(path=path, old=in_git, new=new, reason=reason)])
