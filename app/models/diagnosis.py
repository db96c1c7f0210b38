"""What a detector concluded: a finding, and either a fix intent or the reason there is none."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from app.models.causes import Cause, Facts
from app.models.incident import WorkloadRef


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)

    cause: Cause
    confidence: float = Field(ge=0.0, le=1.0)
    root_cause: str  # one sentence a human can act on
    container: str | None = None
    evidence: list[str] = Field(default_factory=list)  # the lines the finding rests on, redacted
    # The numbers and names a fixer needs (observed limit...): the cause's own facts model, serialised as such.
    facts: SerializeAsAny[Facts] = Field(default_factory=Facts)


class Diagnosis(BaseModel):
    """The detector's verdict. ``fixable`` False means: root cause reported, no PR (``no_fix_reason``)."""

    model_config = ConfigDict(frozen=True)

    detector: str
    finding: Finding
    fixable: bool = True
    no_fix_reason: str | None = None
    others: list[Finding] = Field(default_factory=list)  # further causes seen at the same time
    proposed_by: str = "rule"  # "rule" or "model:<name>"
    # The object whose manifest the fix changes when it is not the workload (a standalone PersistentVolumeClaim
    # the pods wait for): the change stages locate and edit it instead (app/stages/evidence.py ``subject``).
    subject: WorkloadRef | None = None

    @property
    def cause(self) -> Cause:
        return self.finding.cause
