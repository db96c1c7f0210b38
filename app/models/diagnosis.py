"""What a detector concluded: a finding, and either a fix intent or the reason there is none."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)

    cause: str  # e.g. "oom_killed", "image_pull_after_rollout"
    confidence: float = Field(ge=0.0, le=1.0)
    root_cause: str  # one sentence a human can act on
    container: str | None = None
    evidence: list[str] = Field(default_factory=list)  # the lines the finding rests on, redacted
    facts: dict[str, Any] = Field(default_factory=dict)  # numbers and names a fixer needs (observed limit...)


class Diagnosis(BaseModel):
    """The detector's verdict. ``fixable`` False means: root cause reported, no PR (``no_fix_reason``)."""

    model_config = ConfigDict(frozen=True)

    detector: str
    finding: Finding
    fixable: bool = True
    no_fix_reason: str | None = None
    others: list[Finding] = Field(default_factory=list)  # further causes seen at the same time
    proposed_by: str = "rule"  # "rule" or "model:<name>"

    @property
    def cause(self) -> str:
        return self.finding.cause
