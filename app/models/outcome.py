"""What handling one alert produced: the JSON line `autofix handle` prints, and the stage log.

Reasons and decisions quote what the cluster, an alert or the repository said (an exception line, a
command, a file name): they are redacted again here, the last step before stdout, /jobs and MLflow.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SkipValidation

from app import redact
from app.models.runs import PendingRun

MAX_REASON = 4000
Quoted = Annotated[str, AfterValidator(lambda value: redact.capped(value, max_chars=MAX_REASON))]
OutcomeKind = Literal["pr_opened", "pr_updated", "duplicate", "no_fix", "skipped", "failed"]


class StageRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    stage: str
    seconds: float
    decision: Quoted  # what the stage concluded, one line


class Outcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    alertname: str
    fingerprint: str
    outcome: OutcomeKind
    reason: Quoted = ""
    code: str = ""  # why, as a code (a no_fix's: cooldown, escalated, opted_out, ...): what reports count by
    pr_url: str | None = None
    branch: str | None = None
    risk: float | None = None
    record_id: str | None = None  # the run record's key (app.ports.PendingRun): the MLflow tag autofix_record
    stages: list[StageRecord] = Field(default_factory=list)
    workload: str | None = None
    cause: str | None = None
    # The run record, on its way to the job store's outbox with the result (never serialised with it).
    run: Annotated[PendingRun | None, SkipValidation] = Field(default=None, exclude=True, repr=False)

    def result(self) -> dict[str, Any]:
        """The public shape printed by `autofix handle` (keys fixed by the interface)."""
        return self.model_dump(
            include={"alertname", "fingerprint", "outcome", "reason", "pr_url", "branch", "risk", "record_id"}
        )
