"""Small pure helpers over Kubernetes object JSON (dicts as the API server returns them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

K8sObject = dict[str, Any]

# Where the pod template sits in each workload kind.
POD_TEMPLATE_PREFIX: dict[str, str] = {
    "Deployment": "spec.template",
    "StatefulSet": "spec.template",
    "DaemonSet": "spec.template",
    "ReplicaSet": "spec.template",
    "Job": "spec.template",
    "CronJob": "spec.jobTemplate.spec.template",
}

# A bare Pod is its own template: its pod spec is ``spec`` (no controller owns it, GitOps may deploy it).
POD = "Pod"

API_VERSIONS: dict[str, str] = {
    "Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1", "ReplicaSet": "apps/v1",
    "Job": "batch/v1", "CronJob": "batch/v1", "HorizontalPodAutoscaler": "autoscaling/v2",
}


def meta(obj: K8sObject) -> K8sObject:
    value = obj.get("metadata")
    return value if isinstance(value, dict) else {}


def name(obj: K8sObject) -> str:
    return str(meta(obj).get("name", ""))


def annotations_of(obj: K8sObject) -> dict[str, str]:
    return dict(meta(obj).get("annotations") or {})


def labels_of(obj: K8sObject) -> dict[str, str]:
    return dict(meta(obj).get("labels") or {})


def controller_of(obj: K8sObject) -> K8sObject | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owned_by(obj: K8sObject, owner: K8sObject) -> bool:
    uid = meta(owner).get("uid")
    return any(ref.get("uid") == uid for ref in meta(obj).get("ownerReferences") or [])


def revision(rs: K8sObject) -> int:
    try:
        return int(annotations_of(rs).get("deployment.kubernetes.io/revision", "0"))
    except ValueError:
        return 0


def pod_spec_path(kind: str) -> str | None:
    """Field path of the pod spec in an object of ``kind`` (``spec`` for a bare Pod); None: it has none."""
    if kind == POD:
        return "spec"
    prefix = POD_TEMPLATE_PREFIX.get(kind)
    return f"{prefix}.spec" if prefix else None


def pod_spec_of(workload: K8sObject, kind: str) -> K8sObject:
    if kind == POD:
        spec = workload.get("spec")
        return spec if isinstance(spec, dict) else {}
    node: Any = workload
    for key in POD_TEMPLATE_PREFIX.get(kind, "spec.template").split("."):
        node = node.get(key, {}) if isinstance(node, dict) else {}
    spec = node.get("spec", {}) if isinstance(node, dict) else {}
    return spec if isinstance(spec, dict) else {}


def container_spec(pod_spec: K8sObject, container: str) -> tuple[K8sObject | None, bool]:
    """The container named ``container`` and whether it is an init container."""
    for init, key in ((False, "containers"), (True, "initContainers")):
        for c in pod_spec.get(key) or []:
            if c.get("name") == container:
                return dict(c), init
    return None, False


def container_statuses(pod: K8sObject) -> Iterator[tuple[K8sObject, bool]]:
    status = pod.get("status") or {}
    for init, key in ((False, "containerStatuses"), (True, "initContainerStatuses")):
        for cs in status.get(key) or []:
            yield cs, init


def selector_string(workload: K8sObject) -> str | None:
    match = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not match:
        return None
    return ",".join(f"{k}={v}" for k, v in sorted(match.items()))


def event_line(event: K8sObject) -> str:
    """An event as `kubectl get events` shows it: type reason object: message (xN)."""
    involved = event.get("involvedObject") or {}
    count = event.get("count") or 1
    suffix = f" (x{count})" if count and count > 1 else ""
    return (f"{event.get('type', '')} {event.get('reason', '')} "
            f"{involved.get('kind', '')}/{involved.get('name', '')}: {event.get('message', '')}{suffix}").strip()
