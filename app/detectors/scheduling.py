"""Unschedulable: the scheduler says "Insufficient memory/cpu" and the pod asks for more than any node has.

Only a request larger than the largest eligible node's allocatable is a git problem (the fixer lowers it).
A request that would fit an empty node means the cluster is full right now: capacity, not git, so no fix.
"""

from __future__ import annotations

import re
from typing import Any

from app import kube, quantities
from app.models.causes import Cause, ResourceNeed, SchedulingFacts
from app.models.diagnosis import Diagnosis, Finding
from app.models.evidence import Evidence

_INSUFFICIENT = re.compile(r"\bInsufficient (cpu|memory)\b")
_UNITS = {"memory": "bytes", "cpu": "millicores"}


def detect(ev: Evidence) -> Diagnosis | None:
    hit = _unschedulable_pod(ev)
    if hit is None:
        return None
    pod, message = hit
    resources = sorted(set(_INSUFFICIENT.findall(message)))
    nodes = [n for n in ev.nodes if _eligible(n, pod)]
    pod_spec = kube.pod_spec_of(ev.object, str(ev.object.get("kind") or ev.workload.kind))
    lines = [f"pod {kube.name(pod)}: Pending, PodScheduled=False Unschedulable: {message}",
             *[kube.event_line(e) for e in ev.events_for("Pod", kube.name(pod))
               if e.get("reason") == "FailedScheduling"][:2]]
    too_big: dict[str, ResourceNeed] = {}
    for resource in resources:
        found = _needs(pod_spec, resource, nodes)
        if found is None:
            continue
        need, line = found
        lines.append(line)
        if need.pod_request > need.allocatable:
            too_big[resource] = need
    return _diagnosis(ev, kube.name(pod), lines, resources, too_big, nodes)


def _diagnosis(ev: Evidence, pod: str, lines: list[str], resources: list[str], too_big: dict[str, ResourceNeed],
               nodes: list[dict[str, Any]]) -> Diagnosis:
    what = " and ".join(resources)
    containers = sorted({need.container for need in too_big.values()})
    facts = SchedulingFacts(pod=pod, resources=too_big, container=containers[0] if containers else None)
    finding = Finding(
        cause=Cause.UNSCHEDULABLE, confidence=0.9, container=facts.container, evidence=lines, facts=facts,
        root_cause=(f"Pods of {ev.workload.short} cannot be scheduled: they request more {what} than "
                    + ("any node can offer." if too_big else "the nodes have free right now.")),
    )
    if not nodes:
        return Diagnosis(detector="scheduling", finding=finding, fixable=False,
                         no_fix_reason="no node is eligible for the pod (cordoned, tainted or not selected): "
                                       "check the node pool and the pod's nodeSelector and tolerations")
    if not too_big:
        return Diagnosis(detector="scheduling", finding=finding, fixable=False,
                         no_fix_reason=(f"the pod's {what} request fits an empty node: the cluster is full, "
                                        "add capacity (or let the cluster autoscaler do it); git is not the problem"))
    return Diagnosis(detector="scheduling", finding=finding)


def _unschedulable_pod(ev: Evidence) -> tuple[dict[str, Any], str] | None:
    """The first Pending pod whose scheduling failed for lack of cpu or memory, with the scheduler's message."""
    for pod in ev.pods:
        if (pod.get("status") or {}).get("phase") != "Pending":
            continue
        messages = [str(c.get("message") or "") for c in (pod.get("status") or {}).get("conditions") or []
                    if c.get("type") == "PodScheduled" and c.get("status") == "False"]
        messages += [str(e.get("message") or "") for e in ev.events_for("Pod", kube.name(pod))
                     if e.get("reason") == "FailedScheduling"]
        for message in messages:
            if _INSUFFICIENT.search(message):
                return pod, message
    return None


def _eligible(node: dict[str, Any], pod: dict[str, Any]) -> bool:
    """Nodes the pod could land on when empty: schedulable, selected, and no untolerated NoSchedule taint."""
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return False
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    labels = kube.labels_of(node)
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    return all(_tolerated(t, tolerations) for t in spec.get("taints") or []
               if t.get("effect") in ("NoSchedule", "NoExecute"))


def _tolerated(taint: dict[str, Any], tolerations: list[dict[str, Any]]) -> bool:
    for tol in tolerations:
        if tol.get("effect") not in (None, "", taint.get("effect")):
            continue
        if tol.get("operator") == "Exists" and tol.get("key") in (None, "", taint.get("key")):
            return True
        if tol.get("key") == taint.get("key") and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def _amount(resource: str, value: Any) -> int:
    return quantities.parse_bytes(value) if resource == "memory" else quantities.parse_cpu_millis(value)


def _needs(pod_spec: dict[str, Any], resource: str, nodes: list[dict[str, Any]]) -> tuple[ResourceNeed, str] | None:
    """The pod's request of ``resource`` against the largest eligible node (base units: bytes, millicores), and
    the evidence line that says so."""
    requests = {str(c.get("name")): _amount(resource, ((c.get("resources") or {}).get("requests") or {})[resource])
                for c in pod_spec.get("containers") or []
                if resource in (((c.get("resources") or {}).get("requests")) or {})}
    if not requests or not nodes:
        return None
    container = max(requests, key=lambda name: requests[name])
    largest = max(nodes, key=lambda n: _amount(resource, ((n.get("status") or {}).get("allocatable") or {})
                                               .get(resource, "0")))
    raw = ((largest.get("status") or {}).get("allocatable") or {}).get(resource, "0")
    allocatable = _amount(resource, raw)
    total = sum(requests.values())
    need = ResourceNeed(container=container, container_request=requests[container],
                        others=total - requests[container], pod_request=total, allocatable=allocatable,
                        allocatable_raw=str(raw), node=kube.name(largest), unit=_UNITS[resource])
    line = (f"{resource}: pod requests {_show(resource, total)} ({container}: "
            f"{_show(resource, requests[container])}); largest eligible node {kube.name(largest)} has "
            f"allocatable {raw} ({_show(resource, allocatable)})")
    return need, line


def _show(resource: str, amount: int) -> str:
    return f"{amount / 2**20:.0f}Mi" if resource == "memory" else quantities.format_cpu_millis(amount)
