"""Target stage: from an alert's labels to the workload that owns the failing pods (read-only).

A pod no controller owns (a bare Pod) is its own workload: Argo CD and Flux deploy bare Pods like anything else,
so it is resolved through its GitOps tracking later (app/sources/deployers), and stays ``no_fix`` when nothing
in git defines it.
"""

from __future__ import annotations

import re

from app import kube
from app.errors import NoFix
from app.models.incident import Incident, WorkloadRef
from app.ports import ClusterReader

# Pod names of a ReplicaSet end in "-<pod-template-hash>-<5 chars>": lets us find the owner of a pod
# that is already gone (a crash-looping pod is often replaced before we look).
_RS_POD = re.compile(r"^(?P<rs>.+-[a-z0-9]{6,10})-[a-z0-9]{5}$")

_TOP_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "CronJob"}


def resolve(cluster: ClusterReader, incident: Incident) -> WorkloadRef:
    """Workload-level labels win (FACTS.md: their pod/container labels may be the exporter's own)."""
    hint = incident.workload_hint()
    if hint is not None:
        return _climb(cluster, hint)
    namespace, pod_name = incident.namespace, incident.pod
    if not namespace or not pod_name:
        raise NoFix("the alert names no workload and no pod: nothing in git to change", code="no_target")
    pod = cluster.get("Pod", namespace, pod_name)
    if pod is None:
        match = _RS_POD.match(pod_name)
        if match is None:
            raise NoFix(f"pod {namespace}/{pod_name} no longer exists and its owner cannot be inferred",
                        code="no_target")
        return _climb(cluster, WorkloadRef(kind="ReplicaSet", namespace=namespace, name=match.group("rs")))
    owner = kube.controller_of(pod)
    if owner is None:
        return WorkloadRef(kind=kube.POD, namespace=namespace, name=pod_name)
    return _climb(cluster, WorkloadRef(kind=str(owner["kind"]), namespace=namespace, name=str(owner["name"])))


def _climb(cluster: ClusterReader, ref: WorkloadRef) -> WorkloadRef:
    """ReplicaSet -> Deployment, Job -> CronJob: up the controller chain to what a manifest defines."""
    for _ in range(3):
        if ref.kind in _TOP_KINDS or ref.kind == "HorizontalPodAutoscaler":
            return ref
        if ref.kind not in ("ReplicaSet", "Job"):
            raise NoFix(f"{ref} is not a workload kind we can fix", code="unsupported_kind")
        obj = cluster.get(ref.kind, ref.namespace, ref.name)
        if obj is None:
            if ref.kind == "Job":
                return ref
            raise NoFix(f"{ref} no longer exists", code="no_target")
        owner = kube.controller_of(obj)
        if owner is None or owner.get("kind") not in _TOP_KINDS:
            if ref.kind == "Job":
                return ref  # a bare Job is itself defined in git
            raise NoFix(f"{ref} has no Deployment owner", code="no_target")
        ref = WorkloadRef(kind=str(owner["kind"]), namespace=ref.namespace, name=str(owner["name"]))
    return ref
