"""Raise a throttled container's CPU limit: observed limit x policy step, rounded up to 10m, capped.

With Prometheus' usage (``metrics``, app/curves.py) the limit is sized from the observed demand instead: the p95
of usage over the window grown by the share of throttled periods (usage cannot exceed the quota, so throttling
hides demand), x ``cpu.headroom``, within the same caps. When that is no more than the limit (short bursts within
a CFS period, invisible at the scrape's resolution) the step applies and the plan says why."""

from __future__ import annotations

import math
from typing import Any

from app import curves, fixers, quantities
from app.errors import NoFix
from app.models import metrics as m
from app.models.causes import Cause, CpuFacts
from app.models.changes import FieldChange, Plan
from app.models.metrics import Metrics
from app.policies import Policy


def plan(facts: CpuFacts, document: dict[str, Any], policy: Policy, metrics: Metrics | None = None) -> Plan:
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
    reading = None if init else curves.read_cpu(metrics, container, limit=observed / 1000)
    wanted, why = _wanted(facts, reading, policy, observed=observed)
    cap = min(quantities.parse_cpu_millis(policy.cpu.max), int(git_millis * policy.cpu.max_ratio_to_git))
    new_millis = min(wanted, cap // 10 * 10)
    if new_millis <= git_millis:
        raise NoFix(f"CPU limit {in_git} of {container} is at the policy's cap ({policy.cpu.max}, "
                    f"x{policy.cpu.max_ratio_to_git:g} of git): escalate to the owners", code="at_cap")
    new_value = quantities.format_cpu_millis(new_millis)
    capped = " (capped by policy)" if new_millis < wanted else ""
    reason = f"{why}; {facts.throttled} throttled" + fixers.recreate_note(document)
    shown = None if reading is None else reading.curve.model_copy(update={"proposed": new_millis / 1000})
    return Plan(cause=Cause.CPU_THROTTLING, summary=f"Raise CPU limit of container {container} to {new_value}{capped}",
                changes=[FieldChange(path=path, old=in_git, new=new_value, reason=reason)], curve=shown,
                sizing_note=curves.note(metrics, m.CPU_USAGE, container=container))


def _wanted(facts: CpuFacts, reading: curves.CpuReading | None, policy: Policy, *, observed: int) -> tuple[int, str]:
    """Millicores, rounded up to 10m, and why: the demand x headroom when it exceeds the limit, else the step."""
    step = math.ceil(observed * policy.cpu.step / 10) * 10
    by_step = f"x{policy.cpu.step:g} of the observed limit {facts.observed_limit}"
    if reading is None:
        return step, by_step
    headroom = policy.cpu.headroom
    sized = math.ceil(reading.demand * headroom * 1000 / 10) * 10
    demand = (f"p95 of usage {reading.usage.p95:.3g} cores over the window x (1 + {reading.throttled:.0%} of periods "
              f"throttled, p95) = {reading.demand:.3g} cores of demand")
    if sized > observed:
        return sized, f"{demand}, x{headroom:g} headroom (policy cpu.headroom)"
    return step, (f"{by_step}: the {demand} x{headroom:g} stays within the limit, so the throttling comes from "
                  "bursts shorter than the scrape interval")
