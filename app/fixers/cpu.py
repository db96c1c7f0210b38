"""Raise a throttled container's CPU limit: observed limit x policy step, rounded up to 10m, capped."""

from __future__ import annotations

import math
from typing import Any

from app import fixers, quantities
from app.errors import NoFix
from app.models.causes import Cause, CpuFacts
from app.models.changes import FieldChange, Plan
from app.policies import Policy


def plan(facts: CpuFacts, document: dict[str, Any], policy: Policy) -> Plan:
    container, init = facts.container, facts.init
    path = fixers.container_path(str(document.get("kind")), container, init=init, field="resources.limits.cpu")
    in_git = fixers.required_in_git(document, path, code="no_limit_in_git",
                                    missing=f"the manifest in git sets no CPU limit for container {container}")
    if policy.cpu.remove_limit:
        # The editor cannot delete keys yet: say what the policy wants instead of doing something else.
        raise NoFix(f"the policy says to remove CPU limits: delete resources.limits.cpu ({in_git}) of container "
                    f"{container} by hand (automatic removal is not supported yet)", code="remove_not_supported")
    if facts.observed_limit is None:
        raise NoFix(f"container {container} has no CPU limit in the cluster", code="no_limit_in_cluster")
    observed = quantities.parse_cpu_millis(facts.observed_limit)
    git_millis = quantities.parse_cpu_millis(str(in_git))
    if git_millis > observed:
        raise NoFix(f"git already sets CPU limit {in_git} (the cluster runs {facts.observed_limit}): a raise is "
                    "waiting to be synced", code="already_in_git")
    wanted = math.ceil(observed * policy.cpu.step / 10) * 10
    cap = min(quantities.parse_cpu_millis(policy.cpu.max), int(git_millis * policy.cpu.max_ratio_to_git))
    new_millis = min(wanted, cap // 10 * 10)
    if new_millis <= git_millis:
        raise NoFix(f"CPU limit {in_git} of {container} is at the policy's cap ({policy.cpu.max}, "
                    f"x{policy.cpu.max_ratio_to_git:g} of git): escalate to the owners", code="at_cap")
    new_value = quantities.format_cpu_millis(new_millis)
    capped = " (capped by policy)" if new_millis < wanted else ""
    reason = (f"x{policy.cpu.step:g} of the observed limit {facts.observed_limit}; {facts.throttled} throttled"
              + fixers.recreate_note(document))
    return Plan(cause=Cause.CPU_THROTTLING, summary=f"Raise CPU limit of container {container} to {new_value}{capped}",
                changes=[FieldChange(path=path, old=in_git, new=new_value, reason=reason)])
