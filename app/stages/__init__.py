"""The stages of handling one alert, in the order app/pipeline.py runs them (the names are the ones recorded):

    intake     a firing alert accepted (or denied by namespace); a resolved one answered on its PR (history)
    target     the workload that owns the failing pods, its kind and namespace allowed by policy
    evidence   the workload's state, read-only: pods, events, logs, related objects
    diagnosis  detectors, then the optional model when none matched
    ledger     history: what became of earlier PRs for this workload and cause (escalate, cool down, go on)
    subject    only when the fix goes in another object (a standalone claim): that object and its GitOps owners
    source, plan, validate, risk   the change: where it is defined in git, the fix, the edit, its risk
    revision   (after source, only for a rollback the cluster cannot prove) git's history of the field proves it
    declared   (after source, only for probes answering 404 at a path nothing shows served) a path git declares
    history    (after validate) an earlier raise of the same field by anyone: a commit, another bot's PR
    gates      every change, a rule's or a model's, against the same gates
    explain    the optional model's narrative of a rule's diagnosis
    publish    branch, PR and ledger row
    record     the run record (MLflow), built once from all of the above

Each stage is a function with keyword-only, typed inputs that returns a frozen output; nothing is handed on
through a shared mutable object. An output's ``decision`` is the one line /jobs and `autofix explain` show for
the stage; ``stop`` ends the handling there with an outcome (skipped, no_fix) instead of raising.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.models.outcome import OutcomeKind

MAX_DECISION = 500


@dataclass(frozen=True, kw_only=True)
class End:
    """How the handling of an alert ends: the outcome's kind and reason, and the PR it concerns, if any."""

    kind: OutcomeKind
    reason: str
    code: str = ""  # why, as a code (NoFix codes: cooldown, escalated, opted_out, ...)
    pr_url: str | None = None
    branch: str | None = None
    risk: float | None = None


@dataclass(frozen=True, kw_only=True)
class Output:
    """What every stage returns: its decision, and the end of the handling when the stage ends it."""

    decision: str
    stop: End | None = None


def stopped(reason: str) -> str:
    """The decision of a stage that ended the handling without one of its own: why it stopped."""
    return f"stopped: {reason}"[:MAX_DECISION]
