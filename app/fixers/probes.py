"""Probe fixes: point a probe (or each probe answering 404) at the port or path the container serves, or give
a slow starter a startupProbe that covers its observed or estimated start time with margin, within the
policy's ``startup.max_seconds``."""

from __future__ import annotations

import copy
import math
from typing import Any

from app import fixers, podspecs
from app.errors import NoFix
from app.models.causes import Cause, ProbeChange, ProbeFacts, SlowStartFacts
from app.models.changes import FieldChange, Plan
from app.policies import Policy

# Fields of the liveness probe a startupProbe copies: how to probe, not when or how often to give up.
HANDLER_FIELDS = ("exec", "httpGet", "tcpSocket", "grpc", "timeoutSeconds")


def plan(facts: ProbeFacts, document: dict[str, Any], policy: Policy) -> Plan:
    first = ProbeChange(probe=facts.probe, handler=facts.handler, field=facts.field, old=facts.old, new=facts.new)
    wanted = [first, *(facts.others or [])]
    changes = [_change(facts.container, facts.init, c, document) for c in wanted]
    if all(c is None for c in changes):
        raise NoFix(f"git already has {_listed(wanted)}: waiting to be synced", code="already_in_git")
    what = "port" if facts.field == "port" else "path"
    probes = " and ".join(dict.fromkeys(c.probe for c in wanted))
    news = " and ".join(dict.fromkeys(str(c.new) for c in wanted))
    return Plan(cause=Cause.PROBE_MISCONFIGURED,
                summary=f"Point {probes} of container {facts.container} at {what} {news}",
                changes=[c for c in changes if c is not None])


def _change(container: str, init: bool, wanted: ProbeChange, document: dict[str, Any]) -> FieldChange | None:
    """The change of one probe's field (None: git already has the served value)."""
    probe, field, old, new = wanted.probe, wanted.field, wanted.old, wanted.new
    path = fixers.container_path(str(document.get("kind")), container, init=init,
                                 field=f"{probe}.{wanted.handler}.{field}")
    in_git = fixers.value_in_git(document, path)
    if new is None:
        raise NoFix(f"no port or path of container {container} is known to serve {probe}", code="nothing_to_correct")
    if str(in_git) == str(new):
        return None
    if in_git is None or str(in_git) != str(old):
        raise NoFix(f"git has {probe} {field} {in_git}, not the failing {old}: someone changed it since; "
                    "not overriding", code="git_moved")
    if field == "port":
        _check_declared_in_git(document, container, new)
    return FieldChange(path=path, old=in_git, new=new, reason=f"{old} is not served by the container; {new} is")


def _listed(changes: list[ProbeChange]) -> str:
    return ", ".join(f"{c.probe} {c.field} {c.new}" for c in changes)


def _check_declared_in_git(document: dict[str, Any], container: str, port: Any) -> None:
    """The port chosen from the live pod must be declared by the container in git too, or the edit is wrong."""
    ports = fixers.container_path(str(document.get("kind")), container, init=False, field="ports")
    spec = fixers.value_in_git(document, ports)
    declared = podspecs.declared_ports({"ports": spec if isinstance(spec, list) else []})
    if podspecs.resolve_port(port, declared) is None:
        raise NoFix(f"container {container} in git does not declare port {port}: git and the cluster differ; "
                    "not guessing", code="git_moved")


def plan_slow_start(facts: SlowStartFacts, document: dict[str, Any], policy: Policy) -> Plan:
    container, needed, bound = facts.container, facts.needed_seconds, policy.startup.max_seconds
    if needed > bound:
        how = "its log states" if facts.basis is None else f"estimated from its {facts.basis}"
        raise NoFix(f"container {container} needs about {facts.observed_seconds:g} s to start ({how}), "
                    f"{needed} s with margin x{podspecs.START_MARGIN:g}, above the policy's startup.max_seconds "
                    f"{bound}: size its startupProbe by hand", code="at_cap")
    kind = str(document.get("kind"))
    startup_path = fixers.container_path(kind, container, init=False, field="startupProbe")
    startup = fixers.value_in_git(document, startup_path)
    if isinstance(startup, dict):
        return _raise_threshold(container, startup_path, startup, needed, facts)
    liveness = fixers.value_in_git(document, fixers.container_path(kind, container, init=False, field="livenessProbe"))
    if not isinstance(liveness, dict) or not any(k in liveness for k in podspecs.HANDLERS + ("exec",)):
        raise NoFix(f"the manifest in git has no liveness probe for container {container} to copy",
                    code="no_probe_in_git")
    # A startupProbe checks as the liveness probe does, at least every default period (a liveness probe every
    # second would make a threshold in the hundreds).
    period = max(int(liveness.get("periodSeconds") or podspecs.DEFAULT_PERIOD), podspecs.DEFAULT_PERIOD)
    new = {k: copy.deepcopy(liveness[k]) for k in HANDLER_FIELDS if k in liveness}
    new.update({"periodSeconds": period, "failureThreshold": math.ceil(needed / period)})
    return Plan(cause=Cause.SLOW_START,
                summary=f"Add a startupProbe to container {container} allowing {new['failureThreshold'] * period} s "
                        "to start",
                changes=[FieldChange(path=startup_path, old=None, new=new,
                                     reason=f"{_observed(facts)} x{podspecs.START_MARGIN:g}; "
                                            f"liveness allowed about {facts.allowed_seconds:g} s")])


def _observed(facts: SlowStartFacts) -> str:
    if facts.basis is None:
        return f"observed start {facts.observed_seconds:g} s"
    return f"start estimated from its {facts.basis} at {facts.observed_seconds:g} s"


def _raise_threshold(container: str, startup_path: str, startup: dict[str, Any], needed: int,
                     facts: SlowStartFacts) -> Plan:
    period = int(startup.get("periodSeconds") or podspecs.DEFAULT_PERIOD)
    delay = int(startup.get("initialDelaySeconds") or 0)
    current = startup.get("failureThreshold")
    new = math.ceil(max(needed - delay, period) / period)
    if current is not None and int(current) >= new:
        raise NoFix(f"git's startupProbe of {container} already allows {delay + int(current) * period} s: waiting to be "
                    "synced", code="already_in_git")
    return Plan(cause=Cause.SLOW_START, summary=f"Raise startupProbe failureThreshold of container {container} to {new}",
                changes=[FieldChange(path=f"{startup_path}.failureThreshold", old=current, new=new,
                                     reason=f"{_observed(facts)} x{podspecs.START_MARGIN:g}")])

