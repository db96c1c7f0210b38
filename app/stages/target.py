"""Target stage: the workload that owns the failing pods (app/targets.py), if policy lets the bot touch it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from app import targets
from app.errors import PermanentError
from app.models.incident import Incident, WorkloadRef
from app.policies import Policy
from app.ports import ClusterReader
from app.stages import End, Output


@dataclass(frozen=True, kw_only=True)
class Target(Output):
    workload: WorkloadRef
    namespace_labels: Mapping[str, str]  # protected? which environment? (gates and risk read them)
    namespace_annotations: Mapping[str, str] = field(default_factory=dict)  # which environment? (risk)


def resolve(*, cluster: ClusterReader, incident: Incident, policy: Policy, own_namespace: str | None) -> Target:
    workload = targets.resolve(cluster, incident)
    decision = f"workload {workload}"
    if workload.kind not in policy.kinds:
        return Target(workload=workload, namespace_labels={}, decision=decision,
                      stop=End(kind="skipped", reason=f"kind {workload.kind} is not allowed by policy"))
    try:
        obj = cluster.get("Namespace", None, workload.namespace)
    except PermanentError as err:  # unreadable means we cannot tell whether it is protected: stop
        reason = f"cannot read Namespace {workload.namespace} to check whether it is protected ({err.message})"
        return Target(workload=workload, namespace_labels={}, decision=decision,
                      stop=End(kind="no_fix", reason=reason, code="namespace_unreadable"))
    meta = (obj or {}).get("metadata") or {}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    denied = policy.namespace_denial(workload.namespace, labels=labels, own=own_namespace)
    stop = End(kind="skipped", reason=denied) if denied else None
    return Target(workload=workload, namespace_labels=labels, namespace_annotations=annotations, decision=decision,
                  stop=stop)
