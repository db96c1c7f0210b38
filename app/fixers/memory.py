"""Raise a container's memory limit after OOM kills: observed limit x policy step, whole Mi, capped."""

from __future__ import annotations

from typing import Any

from app import fixers, quantities
from app.errors import NoFix
from app.models.causes import Cause, OomFacts
from app.models.changes import FieldChange, Plan
from app.policies import Policy


def plan(facts: OomFacts, document: dict[str, Any], policy: Policy) -> Plan:
    container, init = facts.container, facts.init
    kind = str(document.get("kind"))
    limit_path = fixers.container_path(kind, container, init=init, field="resources.limits.memory")
    request_path = fixers.container_path(kind, container, init=init, field="resources.requests.memory")
    in_git = fixers.value_in_git(document, limit_path)
    if in_git is None:
        raise NoFix(f"the manifest in git sets no memory limit for container {container}", code="no_limit_in_git")
    if facts.observed_limit is None:
        raise NoFix(f"container {container} has no memory limit in the cluster", code="no_limit_in_cluster")
    observed = quantities.parse_bytes(facts.observed_limit)
    git_bytes = quantities.parse_bytes(str(in_git))
    if git_bytes > observed:
        raise NoFix(f"git already sets memory limit {in_git} (the cluster runs {facts.observed_limit}): "
                    "a raise is waiting to be synced", code="already_in_git")
    wanted = int(observed * policy.memory.step)
    cap = min(quantities.parse_bytes(policy.memory.max), int(git_bytes * policy.memory.max_ratio_to_git))
    new_bytes = min(wanted, cap)
    new_value = quantities.format_mebibytes(new_bytes)
    if quantities.parse_bytes(new_value) > cap:  # rounding up to a whole Mi may cross the cap: round down
        new_value = f"{cap // 2**20}Mi"
    if quantities.parse_bytes(new_value) <= git_bytes:
        raise NoFix(f"memory limit {in_git} of {container} is at the policy's cap ({policy.memory.max}, "
                    f"x{policy.memory.max_ratio_to_git:g} of git): escalate to the owners", code="at_cap")
    changes = [FieldChange(path=limit_path, old=in_git, new=new_value,
                           reason=f"x{policy.memory.step:g} of the observed limit {facts.observed_limit}"
                                  + fixers.recreate_note(document))]
    request = fixers.value_in_git(document, request_path)
    if request is not None and quantities.parse_bytes(str(request)) > quantities.parse_bytes(new_value):
        changes.append(FieldChange(path=request_path, old=request, new=new_value,
                                   reason="a request may not exceed its limit"))
    capped = " (capped by policy)" if new_bytes < wanted else ""
    return Plan(cause=Cause.OOM_KILLED, changes=changes,
                summary=f"Raise memory limit of container {container} to {new_value}{capped}")

