"""HPA at its ceiling: currentReplicas == maxReplicas while the metrics still ask for more pods.

Raising maxReplicas only helps when the HPA wants more pods (ScalingLimited TooManyReplicas, or a metric
above its target) and the namespace's ResourceQuota has room for them; the quota's room (in pods) is
computed here from status.hard - status.used and the scale target's per-pod requests and limits.
"""

from __future__ import annotations

from typing import Any

from app import kube, quantities
from app.models.causes import Cause, HpaFacts
from app.models.diagnosis import Diagnosis, Finding
from app.models.evidence import Evidence

ALERTS = frozenset({"KubeHpaMaxedOut"})
# Quota keys a new pod consumes, with the pod-template field that says how much.
_QUOTA_KEYS = {"requests.cpu": ("requests", "cpu"), "cpu": ("requests", "cpu"),
               "requests.memory": ("requests", "memory"), "memory": ("requests", "memory"),
               "limits.cpu": ("limits", "cpu"), "limits.memory": ("limits", "memory")}


def detect(ev: Evidence) -> Diagnosis | None:
    if ev.workload.kind != "HorizontalPodAutoscaler":
        return None
    spec, status = ev.object.get("spec") or {}, ev.object.get("status") or {}
    maximum, current = int(spec.get("maxReplicas") or 0), int(status.get("currentReplicas") or 0)
    if not maximum or current < maximum:
        return None
    limited = _condition(ev.object, "ScalingLimited")
    lines = [f"HorizontalPodAutoscaler {ev.workload.short}: currentReplicas={current} "
             f"desiredReplicas={status.get('desiredReplicas')} minReplicas={spec.get('minReplicas', 1)} "
             f"maxReplicas={maximum}",
             *_metric_lines(ev.object),
             *([f"condition ScalingLimited={limited.get('status')} {limited.get('reason')}: {limited.get('message')}"]
               if limited else []),
             *[kube.event_line(e) for e in ev.events_for("HorizontalPodAutoscaler", ev.workload.name)][:3]]
    room, quota_lines = _quota_room(ev)
    finding = Finding(
        cause=Cause.HPA_MAXED_OUT, confidence=0.85, evidence=[*lines, *quota_lines],
        root_cause=(f"HorizontalPodAutoscaler {ev.workload.short} has run at its maxReplicas of {maximum} while "
                    "its metrics ask for more pods: the load exceeds what the ceiling allows."),
        facts=HpaFacts(max_replicas=maximum, current_replicas=current, quota_room=room),
    )
    if int(spec.get("minReplicas") or 1) >= maximum:
        return _no_fix(finding, f"minReplicas equals maxReplicas ({maximum}): the replica count is pinned on purpose")
    if not _wants_more(ev.object, limited):
        return _no_fix(finding, "the HPA is at its maximum but no metric is above its target: more pods would not "
                                "be used")
    if room == 0:
        return _no_fix(finding, "the namespace's ResourceQuota has no room for another pod: raise the quota (or "
                                "free capacity) before raising maxReplicas")
    return Diagnosis(detector="hpa", finding=finding)


def _no_fix(finding: Finding, reason: str) -> Diagnosis:
    return Diagnosis(detector="hpa", finding=finding, fixable=False, no_fix_reason=reason)


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return None


def _metric_lines(hpa: dict[str, Any]) -> list[str]:
    targets = _targets(hpa)
    lines = []
    for m in (hpa.get("status") or {}).get("currentMetrics") or []:
        name = _metric_name(m)
        current = _body(m).get("current") or {}
        lines.append(f"metric {name}: current {_metric_value(current)} vs target {_metric_value(targets.get(name, {}))}")
    return lines


def _body(m: dict[str, Any]) -> dict[str, Any]:
    """A metric's source by its type: type "ContainerResource" lives under key "containerResource"."""
    kind = str(m.get("type") or "Resource")
    body = m.get(kind[:1].lower() + kind[1:])
    return body if isinstance(body, dict) else {}


def _targets(hpa: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {_metric_name(m): _body(m).get("target") or {} for m in (hpa.get("spec") or {}).get("metrics") or []}


def _metric_name(m: dict[str, Any]) -> str:
    body = _body(m)
    return str(body.get("name") or (body.get("metric") or {}).get("name") or m.get("type"))


def _metric_value(v: dict[str, Any]) -> str:
    if "averageUtilization" in v:
        return f"{v['averageUtilization']}%"
    return str(v.get("averageValue") or v.get("value") or "?")


def _wants_more(hpa: dict[str, Any], limited: dict[str, Any] | None) -> bool:
    if limited and limited.get("status") == "True" and limited.get("reason") == "TooManyReplicas":
        return True
    targets = _targets(hpa)
    for m in (hpa.get("status") or {}).get("currentMetrics") or []:
        current = _body(m).get("current") or {}
        target = targets.get(_metric_name(m), {})
        both = "averageUtilization" in current and "averageUtilization" in target
        if both and int(current["averageUtilization"]) > int(target["averageUtilization"]):
            return True
    return False


def _quota_room(ev: Evidence) -> tuple[int | None, list[str]]:
    """How many more pods of the scale target every ResourceQuota in the namespace admits (None: no quota)."""
    target = _scale_target(ev)
    per_pod = _per_pod(kube.pod_spec_of(target, str(target.get("kind") or ""))) if target else {}
    room: int | None = None
    lines = []
    for quota in (o for o in ev.related if o.get("kind") == "ResourceQuota"):
        status = quota.get("status") or {}
        hard, used = status.get("hard") or {}, status.get("used") or {}
        for key, limit in hard.items():
            need = 1 if key in ("pods", "count/pods") else per_pod.get(key, 0)
            if need <= 0:  # a key the new pods don't consume (services, storage...) cannot stop them
                continue
            free = _base(key, limit) - _base(key, used.get(key, "0"))
            fits = max(free, 0) // need
            lines.append(f"ResourceQuota {kube.name(quota)}: {key} used {used.get(key, '0')} of {limit}; "
                         f"a pod needs {_show(key, need)}: room for {fits} more pod(s)")
            room = fits if room is None else min(room, fits)
    return room, lines


def _scale_target(ev: Evidence) -> dict[str, Any]:
    ref = (ev.object.get("spec") or {}).get("scaleTargetRef") or {}
    for obj in ev.related:
        if obj.get("kind") == ref.get("kind") and kube.name(obj) == ref.get("name"):
            return obj
    return {}


def _per_pod(pod_spec: dict[str, Any]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for c in pod_spec.get("containers") or []:
        resources = c.get("resources") or {}
        for key, (section, resource) in _QUOTA_KEYS.items():
            value = (resources.get(section) or {}).get(resource)
            if value is not None:
                totals[key] = totals.get(key, 0) + _base(key, value)
    return totals


def _base(key: str, value: Any) -> int:
    if key.endswith("cpu"):
        return quantities.parse_cpu_millis(value)
    if key.endswith("memory"):
        return quantities.parse_bytes(value)
    return int(quantities.parse(value))


def _show(key: str, amount: int) -> str:
    if key.endswith("cpu"):
        return quantities.format_cpu_millis(amount)
    if key.endswith("memory"):
        return quantities.format_mebibytes(amount)
    return str(amount)
