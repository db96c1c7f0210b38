"""Raise a container's memory limit after OOM kills: observed limit x policy step, whole Mi, capped.

Never for a leak: memory that grows steadily between restarts (app/detectors/oom.py reads the signs, the policy's
``memory.leak`` sets the thresholds) is escalated with ``no_fix`` (memory_leak), since a higher limit only delays
the next kill."""

from __future__ import annotations

import statistics
from typing import Any

from app import fixers, quantities
from app.errors import NoFix
from app.models.causes import Cause, LeakSigns, OomFacts
from app.models.changes import FieldChange, Plan
from app.policies import MemoryLeak, Policy


def plan(facts: OomFacts, document: dict[str, Any], policy: Policy) -> Plan:
    leak = leak_reason(facts.leak_signs, policy.memory.leak)
    if leak is not None:
        raise NoFix(leak, code="memory_leak")
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



def leak_reason(signs: LeakSigns | None, rule: MemoryLeak) -> str | None:
    """Why the kills are a leak (escalate, never raise), or None. Both signs are needed (``memory.leak``): runs
    that each lived ``min_run_minutes`` and ended at regular intervals (their spread within ``max_spread`` of the
    median) over ``min_kills`` kills, and a size in a killed run's log that never shrank over ``min_log_samples``
    lines and grew ``min_growth`` times. A cache warming up to its size kills a run early and irregularly; a leak
    fills the limit at the same pace every time."""
    if not rule.enabled or signs is None or not signs.runs:
        return None
    lengths = [r.seconds for r in signs.runs] + [r.mean_seconds for r in signs.runs if r.mean_seconds is not None]
    kills = sum(max(r.restarts, 1) for r in signs.runs)
    middle = statistics.median(lengths)
    if kills < rule.min_kills or len(lengths) < 2 or min(lengths) < rule.min_run_minutes * 60 or \
            (max(lengths) - min(lengths)) > rule.max_spread * middle:
        return None
    growing = [g for g in signs.growth if g.never_shrinks and g.samples >= rule.min_log_samples and g.first > 0
               and g.last >= rule.min_growth * g.first]
    if not growing:
        return None
    size = max(growing, key=lambda g: g.last / g.first)
    return (f"escalated: memory grows steadily until the kernel kills the container, a leak: {kills} OOM kills at "
            f"regular intervals (runs of {_minutes(min(lengths))} to {_minutes(max(lengths))}, median "
            f"{_minutes(middle)}, across {len(signs.runs)} pod(s)) and the log of pod {size.pod} shows "
            f"\"{size.what}\" growing from {size.first:g} to {size.last:g} over {size.samples} lines without "
            "shrinking; a higher limit would only delay the next kill: it needs a human")


def _minutes(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
