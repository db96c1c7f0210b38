"""Probe fixes: point a probe at the port (or path) the container serves, or give a slow starter a
startupProbe that covers its observed start time with margin."""

from __future__ import annotations

import copy
import math
from typing import Any

from app import fixers, podspecs
from app.errors import NoFix
from app.models.causes import Cause, ProbeFacts, SlowStartFacts
from app.models.changes import FieldChange, Plan
from app.policies import Policy

# A container that needs longer than this to start is not a probe problem we size blindly.
MAX_START_SECONDS = 900
# Fields of the liveness probe a startupProbe copies: how to probe, not when or how often to give up.
HANDLER_FIELDS = ("exec", "httpGet", "tcpSocket", "grpc", "timeoutSeconds")


def plan(facts: ProbeFacts, document: dict[str, Any], policy: Policy) -> Plan:
    container, probe, field = facts.container, facts.probe, facts.field
    path = fixers.container_path(str(document.get("kind")), container, init=facts.init,
                                 field=f"{probe}.{facts.handler}.{field}")
    in_git = fixers.value_in_git(document, path)
    old, new = facts.old, facts.new
    if new is None:
        raise NoFix(f"no port or path of container {container} is known to serve {probe}", code="nothing_to_correct")
    if str(in_git) == str(new):
        raise NoFix(f"git already has {probe} {field} {new}: waiting to be synced", code="already_in_git")
    if in_git is None or str(in_git) != str(old):
        raise NoFix(f"git has {probe} {field} {in_git}, not the failing {old}: someone changed it since; "
                    "not overriding", code="git_moved")
    if field == "port":
        _check_declared_in_git(document, container, new)
    what = "port" if field == "port" else "path"
    return Plan(cause=Cause.PROBE_MISCONFIGURED, summary=f"Point {probe} of container {container} at {what} {new}",
                changes=[FieldChange(path=path, old=in_git, new=new,
                                     reason=f"{old} is not served by the container; {new} is")])


def _check_declared_in_git(document: dict[str, Any], container: str, port: Any) -> None:
    """The port chosen from the live pod must be declared by the container in git too, or the edit is wrong."""
    ports = fixers.container_path(str(document.get("kind")), container, init=False, field="ports")
    spec = fixers.value_in_git(document, ports)
    declared = podspecs.declared_ports({"ports": spec if isinstance(spec, list) else []})
    if podspecs.resolve_port(port, declared) is None:
        raise NoFix(f"container {container} in git does not declare port {port}: git and the cluster differ; "
                    "not guessing", code="git_moved")


def plan_slow_start(facts: SlowStartFacts, document: dict[str, Any], policy: Policy) -> Plan:
    container, needed = facts.container, facts.needed_seconds
    if needed > MAX_START_SECONDS:
        raise NoFix(f"container {container} needs {needed} s with margin to start, above {MAX_START_SECONDS} s: "
                    "size its startup probe by hand", code="at_cap")
    kind = str(document.get("kind"))
    startup_path = fixers.container_path(kind, container, init=False, field="startupProbe")
    startup = fixers.value_in_git(document, startup_path)
    if isinstance(startup, dict):
        return _raise_threshold(container, startup_path, startup, needed, facts)
    liveness = fixers.value_in_git(document, fixers.container_path(kind, container, init=False, field="livenessProbe"))
    if not isinstance(liveness, dict) or not any(k in liveness for k in podspecs.HANDLERS + ("exec",)):
        raise NoFix(f"the manifest in git has no liveness probe for container {container} to copy",
                    code="no_probe_in_git")
    period = int(liveness.get("periodSeconds") or podspecs.DEFAULT_PERIOD)
    new = {k: copy.deepcopy(liveness[k]) for k in HANDLER_FIELDS if k in liveness}
    new.update({"periodSeconds": period, "failureThreshold": math.ceil(needed / period)})
    return Plan(cause=Cause.SLOW_START,
                summary=f"Add a startupProbe to container {container} allowing {new['failureThreshold'] * period} s "
                        "to start",
                changes=[FieldChange(path=startup_path, old=None, new=new,
                                     reason=f"observed start {facts.observed_seconds:g} s x{podspecs.START_MARGIN:g}; "
                                            f"liveness allowed about {facts.allowed_seconds:g} s")])


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
                                     reason=f"observed start {facts.observed_seconds:g} s x{podspecs.START_MARGIN:g}")])

