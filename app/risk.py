"""Risk: a weighted geometric mean of explained factors, each clipped to [0.01, 1].

A factor is "how much could this go wrong along one axis". The geometric mean means every axis counts;
the clip means a near-zero factor cannot cancel a large one completely.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable
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
# Namespace labels that name the environment, most specific first.
ENV_LABELS = ("environment", "env", "app.kubernetes.io/environment", "tier")
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
           track: TrackRecord | None = None) -> Risk:
    """``related``: the evidence's related objects (HPAs, Services and PDBs selecting the workload); ``track``:
    the ledger's record of earlier fixes of this cause (the ``history`` factor; None leaves the factor out)."""
    weights = {**DEFAULT_WEIGHTS, **policy.risk.weights}
    raw = [
        ("blast_radius", *_blast_radius(workload, related or [])),
        ("resource_sensitivity", *_sensitivity(workload, plan)),
        ("rollback_complexity", *_rollback(workload)),
        ("namespace_scope", *_namespace(namespace, namespace_labels or {}, policy)),
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


def _namespace(namespace: str, labels: dict[str, str], policy: Policy) -> tuple[float, str]:
    env = next((str(labels[k]).lower() for k in ENV_LABELS if labels.get(k)), "")
    production = env in ("prod", "production") or any(
        fnmatch.fnmatchcase(namespace, p) for p in policy.risk.production_namespaces)
    if production:
        return 0.9, f"namespace {namespace} is production" + (f" (label {env})" if env else "")
    if env in ("staging", "stage", "preprod", "uat"):
        return 0.5, f"namespace {namespace} is labelled {env}"
    if env in ("dev", "development", "test", "sandbox", "preview"):
        return 0.15, f"namespace {namespace} is labelled {env}"
    return 0.3, f"namespace {namespace} is not marked production"


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
