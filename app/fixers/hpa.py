"""Raise an HPA's maxReplicas: x policy step (rounded up), within the policy's cap and the ResourceQuota.

With Prometheus' usage and requests of the scale target's pods (``metrics``, app/curves.py) and a CPU utilization
target in git: the replicas the HPA would have wanted over the window by its own formula (pods x utilization /
target), instead of the step, within the same cap and quota. When that is no more than the ceiling the step
applies and the plan says why."""

from __future__ import annotations

import math
from typing import Any

from app import curves, fieldpaths
from app.errors import NoFix
from app.models import metrics as m
from app.models.causes import Cause, HpaFacts
from app.models.changes import FieldChange, Plan
from app.models.metrics import Metrics
from app.policies import Policy

PATH = "spec.maxReplicas"


def plan(facts: HpaFacts, document: dict[str, Any], policy: Policy, metrics: Metrics | None = None) -> Plan:
    if document.get("kind") != "HorizontalPodAutoscaler":
        raise NoFix("the manifest found is not a HorizontalPodAutoscaler", code="wrong_kind")
    try:
        in_git = int(fieldpaths.get(document, PATH))
    except (KeyError, TypeError, ValueError) as err:
        raise NoFix("the HorizontalPodAutoscaler in git has no maxReplicas", code="no_max_in_git") from err
    observed = facts.max_replicas
    if in_git > observed:
        raise NoFix(f"git already sets maxReplicas {in_git} (the cluster runs {observed}): a raise is waiting to be "
                    "synced", code="already_in_git")
    target = cpu_target(document)
    reading = None if target is None else curves.hpa_replicas(metrics, target=target, ceiling=in_git)
    wanted, basis = _wanted(in_git, reading, policy, target=target)
    bounds = {"policy cap": policy.hpa.max}
    room = facts.quota_room
    if room is not None:
        bounds["ResourceQuota room"] = in_git + room
    new = min(wanted, *bounds.values())
    if new <= in_git:
        raise NoFix(f"maxReplicas {in_git} is at the policy's cap ({policy.hpa.max}) or the ResourceQuota's room: "
                    "escalate to the owners", code="at_cap")
    limiter = next((name for name, value in bounds.items() if value == new and new < wanted), None)
    reason = basis + (f", limited by the {limiter}" if limiter else "")
    if room is not None and not limiter:
        reason += f"; the ResourceQuota has room for {room} more pod(s)"
    shown = None if reading is None else reading.curve.model_copy(update={"proposed": float(new)})
    note = "" if target is not None else _no_target_note(metrics)
    return Plan(cause=Cause.HPA_MAXED_OUT, summary=f"Raise maxReplicas to {new}" + (f" ({limiter})" if limiter else ""),
                changes=[FieldChange(path=PATH, old=in_git, new=new, reason=reason)], curve=shown,
                sizing_note=note or curves.note(metrics, m.CPU_USAGE, container=None))


def _wanted(in_git: int, reading: curves.Replicas | None, policy: Policy, *,
            target: float | None) -> tuple[int, str]:
    step = math.ceil(in_git * policy.hpa.step)
    if reading is None:
        return step, f"x{policy.hpa.step:g} of {in_git}"
    utilization = (f"CPU utilization up to {reading.utilization.maximum:.0f}% of request (p95 "
                   f"{reading.utilization.p95:.0f}%) against the target {target:g}%")
    if reading.wanted > in_git:
        return reading.wanted, f"the HPA would have wanted up to {reading.wanted} replicas: {utilization}"
    return step, (f"x{policy.hpa.step:g} of {in_git}: the observed {utilization} would want no more than "
                  f"{reading.wanted}, so the load the HPA reacts to is not in the window")


def cpu_target(hpa: dict[str, Any]) -> float | None:
    """The averageUtilization target of the HPA's CPU resource metric (autoscaling/v2; v1's field), if any."""
    spec = hpa.get("spec") or {}
    for metric in spec.get("metrics") or []:
        body = metric.get("resource") or metric.get("containerResource") or {}
        value = (body.get("target") or {}).get("averageUtilization")
        if body.get("name") == "cpu" and isinstance(value, int | float) and value > 0:
            return float(value)
    legacy = spec.get("targetCPUUtilizationPercentage")
    return float(legacy) if isinstance(legacy, int | float) and legacy > 0 else None


def _no_target_note(metrics: Metrics | None) -> str:
    if metrics is None:
        return ""
    return curves.note(metrics, m.CPU_USAGE, container=None) or \
        "sized without metrics: the HPA in git has no CPU utilization target to size from"
