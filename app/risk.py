"""Risk: a weighted geometric mean of explained factors, each clipped to [0.01, 1].

A factor is "how much could this go wrong along one axis". The geometric mean means every axis counts;
the clip means a near-zero factor cannot cancel a large one completely.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from app import kube, quantities
from app.models.changes import Plan, Risk, RiskFactor, Tally, TrackRecord
from app.policies import Policy
from app.ports import Remediation

FLOOR, CEIL = 0.01, 1.0
DEFAULT_WEIGHTS = {"blast_radius": 1.0, "resource_sensitivity": 1.0, "rollback_complexity": 1.0,
                   "namespace_scope": 1.0, "change_magnitude": 1.0}

# How sensitive a change to this field is, by the last meaningful part of its path.
FIELD_SENSITIVITY = {"memory": 0.3, "cpu": 0.3, "image": 0.5, "maxReplicas": 0.3, "livenessProbe": 0.4,
                     "readinessProbe": 0.4, "startupProbe": 0.3, "storageClassName": 0.6, "name": 0.4}
# What each environment scores on the namespace factor.
ENV_VALUES = {"production": 0.9, "staging": 0.5, "development": 0.15}
SERVING = 0.7  # no signal names the environment, but the workload serves traffic with several replicas
UNKNOWN = 0.3
KIND_SENSITIVITY = {"StatefulSet": 0.3, "DaemonSet": 0.2, "CronJob": -0.1, "Job": -0.1}


def clip(value: float) -> float:
    return min(CEIL, max(FLOOR, value))


def score(factors: list[RiskFactor]) -> float:
    total = sum(f.weight for f in factors)
    if total <= 0:
        return 0.0
    # clip again: exp(log(x)) can land a rounding error below the floor
    return clip(math.exp(sum(f.weight * math.log(clip(f.value)) for f in factors) / total))


def level(value: float, policy: Policy) -> str:
    thresholds = {"medium": 0.3, "high": 0.6, **policy.risk.thresholds}
    if value >= thresholds["high"]:
        return "high"
    if value >= thresholds["medium"]:
        return "medium"
    return "low"


def assess(*, workload: dict[str, Any], namespace: str, plan: Plan, policy: Policy,
           namespace_labels: dict[str, str] | None = None, related: list[dict[str, Any]] | None = None,
           track: TrackRecord | None = None, namespace_annotations: dict[str, str] | None = None,
           gitops: list[dict[str, Any]] | None = None) -> Risk:
    """``related``: the evidence's related objects (HPAs, Services and PDBs selecting the workload); ``track``:
    the ledger's record of earlier fixes of this cause (the ``history`` factor; None leaves the factor out);
    ``gitops``: the Argo CD Application / Flux objects that deploy it (their project and path name environments)."""
    weights = {**DEFAULT_WEIGHTS, **policy.risk.weights}
    signals = Signals(labels=namespace_labels or {}, annotations=namespace_annotations or {}, gitops=gitops or [])
    raw = [
        ("blast_radius", *_blast_radius(workload, related or [])),
        ("resource_sensitivity", *_sensitivity(workload, plan)),
        ("rollback_complexity", *_rollback(workload)),
        ("namespace_scope", *_namespace(namespace, signals, policy, workload=workload, related=related or [])),
        ("change_magnitude", *_magnitude(plan)),
    ]
    factors = [RiskFactor(name=n, value=round(clip(v), 4), weight=weights.get(n, 1.0), explanation=why)
               for n, v, why in raw]
    if track is not None:
        value, why = _history(track)
        # A cold decision has no record to weigh: the factor is shown, and moves nothing.
        factors.append(RiskFactor(name="history", value=round(clip(value), 4),
                                  weight=0.0 if track.cold else weights.get("history", 1.0), explanation=why))
    value = round(score(factors), 4)
    # A lowered request gives the pod less than its team asked for: whatever the score, a human must look hard.
    forced = "high" if _lowers_requests(plan) else None
    return Risk(score=value, level=forced or level(value, policy), factors=factors, track=track)


def track_record(entries: Iterable[Remediation], *, cause: str, workload: str) -> TrackRecord:
    """The ledger's rows of ``cause`` tallied, all workloads and ``workload`` ("Kind/namespace/name") alone."""
    mine = [e for e in entries if e.cause == str(cause)]
    return TrackRecord(cause=str(cause), overall=tally(mine),
                       workload=tally(e for e in mine if e.workload == workload))


def tally(entries: Iterable[Remediation]) -> Tally:
    rows = list(entries)
    finals = [e.final for e in rows]
    return Tally(opened=len(rows), merged=sum(e.state == "merged" for e in rows),
                 closed=sum(e.state == "closed" for e in rows), effective=finals.count("effective"),
                 ineffective=finals.count("ineffective"), reverted=finals.count("reverted"))


def _history(track: TrackRecord) -> tuple[float, str]:
    """The share of earlier decided fixes of this cause that went wrong (closed unmerged, reverted, ineffective),
    this workload's own counted twice, with one good and one bad pseudo-fix so two cases do not decide it."""
    if track.cold:
        still = f" ({track.overall.opened} still open)" if track.overall.opened else ""
        return 0.5, f"cold decision: no earlier {track.cause} fix decided{still}; no weight"
    decided = track.overall.decided + track.workload.decided
    bad = track.overall.bad + track.workload.bad
    why = (f"{track.overall.bad} of {track.overall.decided} decided {track.cause} fix(es) closed, reverted or "
           "ineffective"
           + (f"; this workload {track.workload.bad} of {track.workload.decided}, counted twice"
              if track.workload.decided else ""))
    return (bad + 1) / (decided + 2), why


def _lowers_requests(plan: Plan) -> bool:
    for change in plan.changes:
        if ".resources.requests." not in change.path:
            continue
        try:
            if quantities.parse(str(change.new)) < quantities.parse(str(change.old)):
                return True
        except ValueError:
            continue
    return False


def _blast_radius(workload: dict[str, Any], related: list[dict[str, Any]]) -> tuple[float, str]:
    """How many pods roll and whether users see them: replicas (or HPA max), Services, PDBs."""
    if workload.get("kind") == "DaemonSet":
        value, why = 0.7, "DaemonSet: the change rolls to every node"
    else:
        spec = workload.get("spec") or {}
        replicas = _int(spec.get("replicas") or spec.get("maxReplicas") or 1)
        hpa_max = max((_int((h.get("spec") or {}).get("maxReplicas")) for h in related
                       if h.get("kind") == "HorizontalPodAutoscaler"), default=0)
        pods = max(replicas, hpa_max)
        value = 0.1 + min(0.6, pods / 25)
        why = f"{replicas} replica(s)" + (f", up to {hpa_max} with its HPA" if hpa_max > replicas else "")
    services = sorted(kube.name(o) for o in related if o.get("kind") == "Service")
    if services:
        value += 0.15
        why += f"; serves traffic through Service(s) {', '.join(services[:3])}"
    if any(o.get("kind") == "PodDisruptionBudget" for o in related):
        value += 0.05
        why += "; a PodDisruptionBudget says its availability matters"
    return value, why


def _int(value: Any) -> int:
    try:
        return max(int(str(value)), 0)
    except ValueError:
        return 0


def _sensitivity(workload: dict[str, Any], plan: Plan) -> tuple[float, str]:
    fields = [c.path.rsplit(".", 1)[-1] for c in plan.changes]
    base = max((FIELD_SENSITIVITY.get(f, 0.5) for f in fields), default=0.5)
    if any(".requests." in c.path for c in plan.changes):
        base = max(base, 0.4)
    kind = str(workload.get("kind"))
    value = base + KIND_SENSITIVITY.get(kind, 0.0)
    if _lowers_requests(plan):
        return max(value, 0.9), f"{kind} request(s) lowered below what the team set: level forced high"
    return value, f"{kind} field(s) {', '.join(sorted(set(fields)))}"


def _rollback(workload: dict[str, Any]) -> tuple[float, str]:
    kind = str(workload.get("kind"))
    pod_spec = kube.pod_spec_of(workload, kind)
    claims = [v for v in pod_spec.get("volumes") or [] if "persistentVolumeClaim" in v]
    inits = [c.get("name", "") for c in pod_spec.get("initContainers") or []]
    migrations = [n for n in inits if any(w in n.lower() for w in ("migrat", "schema", "flyway", "liquibase"))]
    if kind == "StatefulSet" or (workload.get("spec") or {}).get("volumeClaimTemplates"):
        return 0.7, "StatefulSet: pods roll one by one with their volumes"
    if migrations:
        return 0.6, f"init container(s) {', '.join(migrations)} look like migrations"
    if claims:
        return 0.5, f"{len(claims)} persistent volume claim(s) mounted"
    return 0.15, "stateless: revert the commit to roll back"


@dataclass(frozen=True)
class Signals:
    """What may name the workload's environment besides its namespace's name."""

    labels: dict[str, str] = field(default_factory=dict)  # the Namespace's
    annotations: dict[str, str] = field(default_factory=dict)  # the Namespace's
    gitops: list[dict[str, Any]] = field(default_factory=list)  # Argo CD Application, Flux Kustomization


def environment(value: str, policy: Policy) -> str | None:
    """"production", "staging" or "development" when ``value`` matches the policy's globs, else None."""
    text = value.strip().lower()
    patterns = policy.risk.environments
    for name, globs in (("production", patterns.production), ("staging", patterns.staging),
                        ("development", patterns.development)):
        if text and any(fnmatch.fnmatchcase(text, g.lower()) for g in globs):
            return name
    return None


def _candidates(signals: Signals, policy: Policy) -> Iterable[tuple[str, str]]:
    """(value, where it was read) in the order they decide: labels, annotations, Argo CD project, Flux path."""
    for source, values in (("label", signals.labels), ("annotation", signals.annotations)):
        for key in policy.risk.environment_keys:
            if values.get(key):
                yield str(values[key]), f"namespace {source} {key}={values[key]}"
    for obj in signals.gitops:
        spec, name = obj.get("spec") or {}, kube.name(obj)
        if obj.get("kind") == "Application" and spec.get("project"):
            yield str(spec["project"]), f"Argo CD Application {name} in project {spec['project']}"
        if obj.get("kind") == "Kustomization" and isinstance(spec.get("path"), str):
            for segment in spec["path"].split("/"):
                if segment not in ("", "."):
                    yield segment, f"Flux Kustomization {name} path {spec['path']}"


def _namespace(namespace: str, signals: Signals, policy: Policy, *, workload: dict[str, Any],
               related: list[dict[str, Any]]) -> tuple[float, str]:
    """The first signal that names an environment decides, and the explanation names it; the namespace's name
    comes after labels, annotations and the GitOps object; with no signal at all, a workload that serves traffic
    with several replicas counts as production-like (a checkout service is not low risk for lack of a label)."""
    for value, where in _candidates(signals, policy):
        env = environment(value, policy)
        if env is not None:
            return ENV_VALUES[env], f"{env}: {where}"
    if any(fnmatch.fnmatchcase(namespace, p) for p in policy.risk.production_namespaces):
        return ENV_VALUES["production"], f"production: namespace name {namespace} matches production_namespaces"
    replicas = _int((workload.get("spec") or {}).get("replicas") or 1)
    services = sorted(kube.name(o) for o in related if o.get("kind") == "Service")
    if services and replicas >= policy.risk.serving_replicas:
        return SERVING, (f"production-like: no label, annotation, Argo CD project or Flux path names the "
                         f"environment of namespace {namespace}, and {replicas} replicas serve traffic through "
                         f"Service(s) {', '.join(services[:3])}")
    return UNKNOWN, f"namespace {namespace}: nothing names its environment, and it serves no traffic with several replicas"


def _magnitude(plan: Plan) -> tuple[float, str]:
    """How far the values move: from the value in git, and, when the sizing read the metrics (``plan.curve``),
    from what the workload was seen to use. A value sized just above observed use is a small step whatever the old
    value was (a request cut from 24Gi to 1.25x a 9Gi peak); one far above or below use is a large one."""
    ratios = []
    for change in plan.changes:
        try:
            old, new = float(quantities.parse(str(change.old))), float(quantities.parse(str(change.new)))
        except (ValueError, ArithmeticError):
            continue
        if old > 0 and new > 0:
            ratios.append(new / old)
    used = _against_use(plan)
    if not ratios:
        return (0.4, "a value replaced, not scaled") if used is None else used
    worst = max(ratios, key=lambda r: abs(math.log2(r)))
    value, why = 0.1 + abs(math.log2(worst)) / 2, f"largest change x{worst:.2f} of the value in git"
    if used is None:
        return value, why
    return (value + used[0]) / 2, f"{why}; {used[1]}"


def _against_use(plan: Plan) -> tuple[float, str] | None:
    """The proposed value against the largest observed use on the plan's curve (same unit), or None."""
    curve = plan.curve
    peak = curve.stats.get("max") if curve is not None else None
    if curve is None or curve.proposed is None or not peak or peak <= 0 or curve.proposed <= 0:
        return None
    ratio = curve.proposed / peak
    seen = f"x{ratio:.2f} of the observed peak {peak:g} {curve.unit}"
    if ratio < 1:
        return 0.8, f"{seen}: below what it was seen to use"
    return 0.1 + abs(math.log2(ratio)) / 2, seen
