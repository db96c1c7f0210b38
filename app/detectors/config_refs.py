"""Config references that do not resolve: CreateContainerConfigError (or FailedMount) because a ConfigMap,
a Secret or one of their keys does not exist.

A ConfigMap (or key) with a near name in the namespace means a typo in git: correct the reference. No near
name means the object itself is missing: report which one and where it is referenced. Secrets are never
listed nor read, so a Secret is always reported, never "corrected" (we could not see what it should be).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app import kube, podspecs
from app.detectors import names
from app.models.causes import Cause, ConfigRefFacts, ConfigTypoFacts
from app.models.diagnosis import Diagnosis, Finding
from app.models.evidence import Evidence

DETECTOR = "config_refs"
REASONS = frozenset({"CreateContainerConfigError"})
# As the kubelet writes them (pkg/kubelet/kubelet_pods.go) and the volume plugins for FailedMount.
_NOT_FOUND = re.compile(r'\b(configmap|secret) "([^"]+)" not found')
_NO_KEY = re.compile(r"couldn't find key (\S+) in (ConfigMap|Secret) ([^/\s]+)/(\S+)")
_KINDS = {"configmap": "ConfigMap", "secret": "Secret"}
MAX_LISTED = 15


@dataclass(frozen=True)
class Problem:
    pod: str
    container: str | None
    kind: str  # ConfigMap or Secret
    name: str
    key: str | None
    message: str


def parse(message: str) -> tuple[str, str, str | None] | None:
    """(kind, name, key) of the missing object named in a kubelet message, or None."""
    if m := _NO_KEY.search(message):
        return m.group(2), m.group(4), m.group(1)
    if m := _NOT_FOUND.search(message):
        return _KINDS[m.group(1)], m.group(2), None
    return None


def detect(ev: Evidence) -> Diagnosis | None:
    problems = _problems(ev)
    if not problems:
        return None
    wanted = ev.incident.container
    problems.sort(key=lambda p: (p.container != wanted, p.kind == "Secret"))
    problem = problems[0]
    pod_spec = kube.pod_spec_of(ev.object, str(ev.object.get("kind") or ev.workload.kind))
    refs = podspecs.references(pod_spec, problem.kind, problem.name, key=problem.key)
    what = _what(problem)
    where = "; ".join(r.describe for r in refs) or "no reference found in the live pod template"
    lines = [f"pod {problem.pod}" + (f" container {problem.container}" if problem.container else "")
             + f": {problem.message}", f"{what} is referenced by: {where}",
             *[kube.event_line(e) for e in ev.events_for("Pod", problem.pod)
               if e.get("reason") in ("Failed", "FailedMount")][:4]]
    facts = ConfigRefFacts(kind=problem.kind, missing=problem.name, key=problem.key, container=problem.container,
                           pod=problem.pod, references=[r.path for r in refs])
    if problem.kind == "Secret":
        return _secret(ev, problem, what, where, lines, facts)
    return _configmap(ev, problem, what, where, lines, facts)


def _secret(ev: Evidence, problem: Problem, what: str, where: str, lines: list[str],
            facts: ConfigRefFacts) -> Diagnosis:
    finding = Finding(cause=Cause.MISSING_SECRET, confidence=0.9, container=problem.container, evidence=lines,
                      facts=facts,
                      root_cause=f"{what} does not exist in namespace {ev.workload.namespace}, so {ev.workload.short} "
                                 f"cannot start its containers; it is referenced by {where}.")
    return Diagnosis(detector=DETECTOR, finding=finding, fixable=False,
                     no_fix_reason=(f"secrets are not created from git and the bot never lists or reads Secrets, so a "
                                    f"typo in the name cannot be ruled out either: create {what} (or the "
                                    "ExternalSecret/SealedSecret that provides it) or correct the reference"))


def _configmap(ev: Evidence, problem: Problem, what: str, where: str, lines: list[str],
               facts: ConfigRefFacts) -> Diagnosis:
    configmaps = {kube.name(o): o for o in ev.related if o.get("kind") == "ConfigMap"}
    if problem.key is None:
        candidates = sorted(configmaps)
        lines.append("ConfigMaps in the namespace: " + _listed(candidates))
    else:
        cm = configmaps.get(problem.name) or {}
        candidates = sorted({*(cm.get("data") or {}), *(cm.get("binaryData") or {})})
        lines.append(f"keys of ConfigMap {problem.name}: " + _listed(candidates))
    near = names.nearest(problem.key or problem.name, candidates)
    if near is None or not facts.references:
        finding = Finding(cause=Cause.MISSING_CONFIG, confidence=0.85, container=problem.container, evidence=lines,
                          facts=facts,
                          root_cause=f"{what} does not exist in namespace {ev.workload.namespace}, so "
                                     f"{ev.workload.short} cannot start; it is referenced by {where}.")
        reason = ("no ConfigMap or key with a near name exists to correct the reference to: create the missing "
                  "object (or fix the reference) by hand" if near is None else
                  f"the live pod template has no reference to {what} the bot could correct")
        return Diagnosis(detector=DETECTOR, finding=finding, fixable=False, no_fix_reason=reason)
    target = f"key {near} of ConfigMap {problem.name}" if problem.key else f"ConfigMap {near}"
    finding = Finding(cause=Cause.CONFIG_REFERENCE, confidence=0.9, container=problem.container, evidence=lines,
                      facts=ConfigTypoFacts(**facts.model_dump(), replacement=near),
                      root_cause=f"{ev.workload.short} references {what}, which does not exist; {target} does: "
                                 f"the reference has a typo ({where}).")
    return Diagnosis(detector=DETECTOR, finding=finding)


def _what(problem: Problem) -> str:
    if problem.key:
        return f"key {problem.key} of {problem.kind} {problem.name}"
    return f"{problem.kind} {problem.name}"


def _listed(values: list[str]) -> str:
    extra = len(values) - MAX_LISTED
    return ", ".join(values[:MAX_LISTED]) + (f" (+{extra} more)" if extra > 0 else "") if values else "(none)"


def _problems(ev: Evidence) -> list[Problem]:
    """Missing objects named by waiting containers, then by FailedMount events (volumes)."""
    found: list[Problem] = []
    for pod in ev.pods:
        for cs, _init in kube.container_statuses(pod):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            message = str(waiting.get("message") or "")
            if waiting.get("reason") == "CreateContainerConfigError" and (parsed := parse(message)):
                found.append(Problem(kube.name(pod), str(cs.get("name")), *parsed, message=message))
    if found:
        return found
    for event in ev.events:
        message = str(event.get("message") or "")
        if event.get("reason") == "FailedMount" and (parsed := parse(message)):
            pod_name = str((event.get("involvedObject") or {}).get("name") or "")
            found.append(Problem(pod_name, None, *parsed, message=message))
    return found
