"""Rollout stuck: not a cause of its own but the context of one.

KubeDeploymentRolloutStuck (or a Progressing=False ProgressDeadlineExceeded condition) says the new
ReplicaSet's pods never became ready; the evidence stage keeps only those pods, the other detectors find
why, and this module puts the stuck rollout in front of their finding. When no detector recognises why,
the stuck rollout itself is reported, without a fix.
"""

from __future__ import annotations

from typing import Any

from app import kube
from app.models.causes import Cause, RolloutFacts
from app.models.diagnosis import Diagnosis, Finding
from app.models.evidence import Evidence

ALERT = "KubeDeploymentRolloutStuck"


def stuck_condition(deployment: dict[str, Any]) -> dict[str, Any] | None:
    """The Progressing=False ProgressDeadlineExceeded condition of a Deployment, if it has one."""
    for c in (deployment.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("status") == "False" and c.get("reason") == "ProgressDeadlineExceeded":
            return dict(c)
    return None


def is_stuck(ev: Evidence) -> bool:
    return ev.workload.kind == "Deployment" and (
        ev.incident.alertname == ALERT or stuck_condition(ev.object) is not None)


def annotate(ev: Evidence, found: list[Diagnosis]) -> list[Diagnosis]:
    """The diagnoses with the stuck rollout stated first; a non-fixable rollout_stuck one when none matched."""
    if not is_stuck(ev):
        return found
    line, sentence = _context(ev)
    if not found:
        finding = Finding(cause=Cause.ROLLOUT_STUCK, confidence=0.6, evidence=[line], root_cause=sentence,
                          facts=RolloutFacts(replicaset=_newest(ev)))
        return [Diagnosis(detector="rollout", finding=finding, fixable=False,
                          no_fix_reason="no rule recognises why the new ReplicaSet's pods fail: see the evidence")]
    first = found[0].finding
    decorated = first.model_copy(update={"root_cause": f"{sentence} {first.root_cause}",
                                         "evidence": [line, *first.evidence],
                                         "facts": first.facts.model_copy(update={"rollout_stuck": True})})
    return [found[0].model_copy(update={"finding": decorated}), *found[1:]]


def _newest(ev: Evidence) -> str:
    return kube.name(ev.replicasets[0]) if ev.replicasets else ""


def _context(ev: Evidence) -> tuple[str, str]:
    condition = stuck_condition(ev.object) or {}
    message = str(condition.get("message") or f'ReplicaSet "{_newest(ev)}" has not progressed.')
    line = (f"Deployment {ev.workload.short}: condition Progressing=False "
            f"{condition.get('reason', 'ProgressDeadlineExceeded')}: {message}")
    revision = kube.revision(ev.replicasets[0]) if ev.replicasets else 0
    sentence = (f"The rollout of {ev.workload.short} is stuck: the pods of its new ReplicaSet {_newest(ev)}"
                + (f" (revision {revision})" if revision else "") + " never became ready.")
    return line, sentence
