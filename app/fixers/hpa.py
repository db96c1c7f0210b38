"""Raise an HPA's maxReplicas: x policy step (rounded up), within the policy's cap and the ResourceQuota."""

from __future__ import annotations

import math
from typing import Any

from app import fieldpaths
from app.errors import NoFix
from app.models.causes import Cause, HpaFacts
from app.models.changes import FieldChange, Plan
from app.policies import Policy

PATH = "spec.maxReplicas"


def plan(facts: HpaFacts, document: dict[str, Any], policy: Policy) -> Plan:
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
    wanted = math.ceil(in_git * policy.hpa.step)
    bounds = {"policy cap": policy.hpa.max}
    room = facts.quota_room
    if room is not None:
        bounds["ResourceQuota room"] = in_git + room
    new = min(wanted, *bounds.values())
    if new <= in_git:
        raise NoFix(f"maxReplicas {in_git} is at the policy's cap ({policy.hpa.max}) or the ResourceQuota's room: "
                    "escalate to the owners", code="at_cap")
    limiter = next((name for name, value in bounds.items() if value == new and new < wanted), None)
    reason = f"x{policy.hpa.step:g} of {in_git}" + (f", limited by the {limiter}" if limiter else "")
    if room is not None and not limiter:
        reason += f"; the ResourceQuota has room for {room} more pod(s)"
    return Plan(cause=Cause.HPA_MAXED_OUT, summary=f"Raise maxReplicas to {new}" + (f" ({limiter})" if limiter else ""),
                changes=[FieldChange(path=PATH, old=in_git, new=new, reason=reason)])
