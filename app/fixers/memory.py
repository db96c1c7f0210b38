"""Raise a container's memory limit after OOM kills: observed limit x policy step, whole Mi, capped.

Never for a leak: memory that grows steadily between restarts (app/detectors/oom.py reads the signs, the policy's
``memory.leak`` sets the thresholds) is escalated with ``no_fix`` (memory_leak), since a higher limit only delays
the next kill.

With Prometheus' working set (``metrics``, read by app/curves.py against ``memory.curve``) the curve decides
first: a release that made memory climb is rolled back to the previous revision's image (as the image rollback
does: the revision must be shown to have worked) or, when it cannot be, escalated naming the release; a leak is
escalated with its growth per hour and time to the limit; an undersized limit is raised to the observed peak x
the policy's headroom (within the same caps) and the plan carries the curve. No usable series: the step, and the
plan says it was sized without metrics."""

from __future__ import annotations

import math
import statistics
from typing import Any

from app import curves, fixers, quantities
from app.errors import NoFix
from app.models import metrics as m
from app.models.causes import Cause, EarlierImage, LeakSigns, OomFacts
from app.models.changes import FieldChange, Plan
from app.models.metrics import Metrics
from app.policies import MemoryLeak, Policy


def plan(facts: OomFacts, document: dict[str, Any], policy: Policy, metrics: Metrics | None = None) -> Plan:
    reading = _reading(facts, metrics, policy)
    if reading is not None and reading.verdict == "regression":
        return _rollback(facts, reading, document, policy)
    if reading is not None and reading.verdict == "leak":
        raise NoFix(_leak_escalation(reading, facts), code="memory_leak")
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
    wanted, why = _wanted(facts, reading, policy, observed=observed)
    cap = min(quantities.parse_bytes(policy.memory.max), int(git_bytes * policy.memory.max_ratio_to_git))
    new_bytes = min(wanted, cap)
    new_value = quantities.format_mebibytes(new_bytes)
    if quantities.parse_bytes(new_value) > cap:  # rounding up to a whole Mi may cross the cap: round down
        new_value = f"{cap // 2**20}Mi"
    if quantities.parse_bytes(new_value) <= git_bytes:
        raise NoFix(f"memory limit {in_git} of {container} is at the policy's cap ({policy.memory.max}, "
                    f"x{policy.memory.max_ratio_to_git:g} of git): escalate to the owners", code="at_cap")
    changes = [FieldChange(path=limit_path, old=in_git, new=new_value, reason=why + fixers.recreate_note(document))]
    request = fixers.value_in_git(document, request_path)
    if request is not None and quantities.parse_bytes(str(request)) > quantities.parse_bytes(new_value):
        changes.append(FieldChange(path=request_path, old=request, new=new_value,
                                   reason="a request may not exceed its limit"))
    capped = " (capped by policy)" if new_bytes < wanted else ""
    shown = None if reading is None else reading.curve.model_copy(
        update={"proposed": quantities.parse_bytes(new_value) / curves.MiB})
    return Plan(cause=Cause.OOM_KILLED, changes=changes, curve=shown,
                sizing_note=curves.note(metrics, m.MEMORY, container=container),
                summary=f"Raise memory limit of container {container} to {new_value}{capped}")


def _reading(facts: OomFacts, metrics: Metrics | None, policy: Policy) -> curves.MemoryReading | None:
    if facts.observed_limit is None or facts.init:
        return None
    return curves.read_memory(metrics, facts.container, limit=quantities.parse_bytes(facts.observed_limit),
                              rule=policy.memory.curve, leak=policy.memory.leak)


def _wanted(facts: OomFacts, reading: curves.MemoryReading | None, policy: Policy, *,
            observed: int) -> tuple[int, str]:
    """The size the limit should have, and why: the observed peak x headroom when the curve shows the working set
    at the limit; else the policy's step over the observed limit (saying why the curve could not size it)."""
    step = (int(observed * policy.memory.step), f"x{policy.memory.step:g} of the observed limit {facts.observed_limit}")
    if reading is None:
        return step
    headroom = policy.memory.curve.headroom
    if reading.verdict == "undersized":
        sized = math.ceil(reading.peak * headroom)
        if sized > observed:
            return sized, (f"observed peak {curves.mib(reading.peak)} x{headroom:g} headroom (policy "
                           f"memory.curve.headroom); {reading.why}")  # the gist first: a PR's table cuts long reasons
    return step[0], f"{step[1]}; {reading.why}"


def _leak_escalation(reading: curves.MemoryReading, facts: OomFacts) -> str:
    """The escalation of a leak the curve shows, with the log's growing size when the killed run printed one."""
    size = max((g for g in (facts.leak_signs.growth if facts.leak_signs else ()) if g.first > 0),
               key=lambda g: g.last / g.first, default=None)
    logged = (f"; the log of pod {size.pod} shows \"{size.what}\" growing from {size.first:g} to {size.last:g}"
              if size is not None else "")
    return (f"escalated: {reading.why}{logged}; a higher limit would only delay the next kill: it needs a human")


def _rollback(facts: OomFacts, reading: curves.MemoryReading, document: dict[str, Any], policy: Policy) -> Plan:
    """A release made memory climb: back to the image of the revision before it, never a raise."""
    release = _release(reading)
    earlier = facts.earlier
    if earlier is None:
        raise NoFix(f"escalated: {reading.why}; no earlier ReplicaSet ran another image of container "
                    f"{facts.container} to roll back to: revert {release} by hand, a raise would hide the "
                    "regression", code="memory_regression")
    if earlier.unproven is not None:
        raise NoFix(f"escalated: {reading.why}; {earlier.unproven}: revert {release} by hand, a raise would hide "
                    "the regression", code="memory_regression")
    previous = reading.previous
    if previous is not None and previous.name != earlier.pod_template_hash and previous.image != earlier.image:
        raise NoFix(f"escalated: {reading.why}; the revision before it ran {previous.image}, not the image "
                    f"{earlier.image} of replicaset {earlier.replicaset}: the release changed more than the image, "
                    f"revert {release} by hand", code="memory_regression")
    fixers.require_proven_revision(policy, revision=earlier.revision, replicaset=earlier.replicaset,
                                   ran=earlier.image, seconds=earlier.ran_seconds,
                                   by_hand=f"revert {release} by hand")
    return _image_plan(facts, earlier, document, why=reading.why, curve=reading.curve)


def _release(reading: curves.MemoryReading) -> str:
    before, after = reading.previous, reading.current
    if before is None or after is None:
        return "the release"
    return (f"the release of revision {after.name} ({after.image or 'image unknown'}, after revision {before.name} "
            f"with {before.image or 'image unknown'})")


def _image_plan(facts: OomFacts, earlier: EarlierImage, document: dict[str, Any], *, why: str,
                curve: m.Curve) -> Plan:
    container = facts.container
    good, bad = earlier.image, earlier.failing_image
    path = fixers.image_to_roll_back(document, container=container, init=facts.init, good=good, bad=bad,
                                     bad_is="the release")
    ran = ("whose pods serve now" if earlier.ran_seconds is None
           else f"which ran {quantities.format_duration(earlier.ran_seconds)} until the release replaced it")
    # An image rollback: held to the image rollback's paths (policy causes.image_pull_after_rollout), not memory's.
    return Plan(cause=Cause.IMAGE_PULL_AFTER_ROLLOUT, curve=curve,
                summary=f"Roll back image of container {container} to {good} (memory regression in {bad})",
                changes=[FieldChange(path=path, old=bad, new=good,
                                     reason=(f"memory regression in {bad}: back to {good} of revision "
                                             f"{earlier.revision} (replicaset {earlier.replicaset}), {ran}; a higher "
                                             f"limit would hide the regression; {why}"))])


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
