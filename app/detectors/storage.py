"""PVC pending: the claim names a StorageClass that does not exist, and one with a near name does.

The persistentvolume-controller writes `ProvisioningFailed: storageclass.storage.k8s.io "x" not found` on the
claim. A unique near name (a typo) is the fix; none, or two equally near, is no fix. A claim from a
StatefulSet's volumeClaimTemplates is defined in the workload's manifest; a standalone claim is its own object,
deployed by Argo CD or Flux like the pods that wait for it: the fix goes in the claim's own manifest (the
diagnosis names it as its ``subject``). A claim's spec is immutable once created, so the PR says what to do by hand.
"""

from __future__ import annotations

import re
from typing import Any

from app import kube
from app.detectors import names
from app.models.causes import Cause, StorageClassFacts
from app.models.diagnosis import Diagnosis, Finding
from app.models.evidence import Evidence
from app.models.incident import WorkloadRef

_NOT_FOUND = re.compile(r'storageclass\.storage\.k8s\.io "([^"]+)" not found')
_REASONS = ("ProvisioningFailed", "FailedBinding")


def detect(ev: Evidence) -> Diagnosis | None:
    hit = _missing_class(ev)
    if hit is None:
        return None
    pvc, missing, events = hit
    classes = sorted(kube.name(o) for o in ev.related if o.get("kind") == "StorageClass")
    near = names.nearest(missing, classes)
    template = _template_of(ev, kube.name(pvc))
    pods = [kube.name(p) for p in ev.pods if kube.name(pvc) in _claims(p)]
    lines = [f"PersistentVolumeClaim {kube.name(pvc)}: phase={(pvc.get('status') or {}).get('phase')} "
             f"storageClassName={missing}",
             *[kube.event_line(e) for e in events[:3]],
             f"StorageClasses in the cluster: {', '.join(classes) or 'none'}",
             *[f"pod {p}: Pending, waiting for claim {kube.name(pvc)}" for p in pods[:3]]]
    finding = Finding(
        cause=Cause.PVC_STORAGE_CLASS, confidence=0.9, evidence=lines,
        root_cause=(f"PersistentVolumeClaim {kube.name(pvc)} of {ev.workload.short} asks for StorageClass {missing}, "
                    "which does not exist, so no volume is provisioned and its pods stay Pending."
                    + (f" {near} exists." if near else "")),
        facts=StorageClassFacts(claim=kube.name(pvc), missing_class=missing, storage_class=near, template=template),
    )
    if near is None:
        return _no_fix(finding, f"no StorageClass has a name close to {missing} (or several do): pick the class with "
                                "the platform team")
    if template is None:  # a standalone claim: the fix goes in its own manifest, wherever git defines it
        claim = WorkloadRef(kind="PersistentVolumeClaim", namespace=ev.workload.namespace, name=kube.name(pvc))
        return Diagnosis(detector="storage", finding=finding, subject=claim)
    return Diagnosis(detector="storage", finding=finding)


def _no_fix(finding: Finding, reason: str) -> Diagnosis:
    return Diagnosis(detector="storage", finding=finding, fixable=False, no_fix_reason=reason)


def _missing_class(ev: Evidence) -> tuple[dict[str, Any], str, list[dict[str, Any]]] | None:
    for pvc in (o for o in ev.related if o.get("kind") == "PersistentVolumeClaim"):
        if (pvc.get("status") or {}).get("phase") != "Pending":
            continue
        events = [e for e in ev.events_for("PersistentVolumeClaim", kube.name(pvc)) if e.get("reason") in _REASONS]
        for event in events:
            match = _NOT_FOUND.search(str(event.get("message") or ""))
            if match:
                return pvc, match.group(1), events
    return None


def _claims(pod: dict[str, Any]) -> set[str]:
    return {str((v.get("persistentVolumeClaim") or {}).get("claimName"))
            for v in (pod.get("spec") or {}).get("volumes") or [] if v.get("persistentVolumeClaim")}


def _template_of(ev: Evidence, claim: str) -> str | None:
    """The volumeClaimTemplate a StatefulSet claim comes from: claims are named <template>-<sts>-<ordinal>."""
    if ev.object.get("kind") != "StatefulSet":
        return None
    for tpl in (ev.object.get("spec") or {}).get("volumeClaimTemplates") or []:
        name = kube.name(tpl)
        if re.fullmatch(rf"{re.escape(name)}-{re.escape(ev.workload.name)}-[0-9]+", claim):
            return name
    return None
