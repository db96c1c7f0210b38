"""Diagnosis stage: the detectors (app/causes.py), then, when none matched, the optional model's proposal."""

from __future__ import annotations

from dataclasses import dataclass

from app import advice, causes
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.policies import Policy
from app.ports import Advisor
from app.stages import End, Output, consult, declared, revision, stopped


@dataclass(frozen=True, kw_only=True)
class Diagnosed(Output):
    diagnosis: Diagnosis | None  # None: nothing recognised the failure (``stop`` says so)
    consultation: consult.Consultation[advice.Proposal] | None = None


def diagnose(*, evidence: Evidence, policy: Policy, advisor: Advisor | None) -> Diagnosed:
    found = causes.diagnose(evidence)
    if not found:
        return _ask_model(evidence=evidence, policy=policy, advisor=advisor)
    first = found[0].model_copy(update={"others": [d.finding for d in found[1:]]})
    return _judged(first)


def _judged(diagnosis: Diagnosis, consultation: consult.Consultation[advice.Proposal] | None = None) -> Diagnosed:
    # Unproven on the cluster's evidence: git's history (a rollback) or what git declares (a probe path) may prove it.
    asks_git = revision.wanted(diagnosis) or declared.wanted(diagnosis)
    decision = f"{diagnosis.detector}: {diagnosis.cause}" + (
        "" if diagnosis.fixable else " (unproven: asks git)" if asks_git else " (no fix)")
    stop = None
    if not diagnosis.fixable and not asks_git:
        stop = End(kind="no_fix", reason=f"{diagnosis.finding.root_cause} No fix: {diagnosis.no_fix_reason}",
                   code="no_fix")
    return Diagnosed(diagnosis=diagnosis, consultation=consultation, decision=decision, stop=stop)


def _ask_model(*, evidence: Evidence, policy: Policy, advisor: Advisor | None) -> Diagnosed:
    """No detector matched: a model may propose a change (gated by app/fixers/model.py), else no_fix."""
    unknown = End(kind="no_fix", code="unknown_cause",
                  reason=f"no detector recognised the failure of {evidence.workload}: see the evidence in MLflow")
    allowed = policy.llm_paths_for(evidence.workload.kind)
    if advisor is None or not allowed:
        return Diagnosed(diagnosis=None, decision=stopped(unknown.reason), stop=unknown)
    asked = consult.ask(advisor, advice.propose_prompt(evidence, allowed), advisor.propose,
                        answered=lambda proposal: f"model {advisor.model} consulted: proposed "
                                                  f"{len(proposal.changes)} change(s), gated by policy")
    if asked.answer is None:
        return Diagnosed(diagnosis=None, consultation=asked, decision=stopped(unknown.reason), stop=unknown)
    return _judged(advice.diagnosis_from(asked.answer, evidence, model=advisor.model), asked)
