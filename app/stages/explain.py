"""Explain stage: a detector matched; the optional model may write the narrative shown in the PR.

The rule's fix stands whatever the model says (or fails to say).
"""

from __future__ import annotations

from dataclasses import dataclass

from app import advice
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.policies import Policy
from app.ports import Advisor
from app.stages import Output, consult


@dataclass(frozen=True, kw_only=True)
class Explained(Output):
    narrative: str | None  # None: the model failed; the PR goes without it
    consultation: consult.Consultation[str]


def wanted(*, advisor: Advisor | None, diagnosis: Diagnosis, policy: Policy) -> bool:
    """Only for a rule's diagnosis, with a model wired and the policy asking for explanations."""
    return advisor is not None and diagnosis.proposed_by == "rule" and policy.llm.enabled and policy.llm.explain


def explain(*, evidence: Evidence, diagnosis: Diagnosis, advisor: Advisor) -> Explained:
    asked = consult.ask(advisor, advice.explain_prompt(evidence, diagnosis), advisor.explain,
                        answered=lambda _text: f"model {advisor.model} consulted: wrote the explanation")
    narrative = advice.narrative(asked.answer) if asked.answer is not None else None
    return Explained(narrative=narrative, consultation=asked, decision=asked.note or "no explanation")
